"""The two halves of fast revocation in a single-user server.

1. **HTTP**: the server's ``HubOAuth`` cache keeps the owner's answers for ``cache_max_age``
   (unchanged, 300 s by default) but anyone else's for ``guest_cache_max_age`` (2 s): a
   revoked helper's next request is checked with the hub again within that time and refused.
   The owner's requests pay nothing extra.
2. **Websockets**: every websocket opened by someone other than the owner (kernel, terminal,
   collaboration document) is remembered; every ``check_interval`` seconds their tokens are
   checked with the hub, bypassing the cache (``user_for_token(..., use_cache=False)``, one
   call per token); sockets whose token lost access to this server are closed (code 1008),
   and the refusal is written into the cache, so that reconnecting fails too.

3. **The hub away** (restarting, crashed): the owner's requests go on with the hub's last
   answer about their token for up to ``hub_outage_grace`` seconds, so a session keeps
   working while its hub is down; anyone else is answered 503 ("the hub is not answering"),
   never let in on an answer the hub cannot confirm and never a 500.

Outside a JupyterHub (no ``HubOAuth`` identity provider) it does nothing.
"""

from __future__ import annotations

import hashlib
import os
import time
import weakref

from jupyterhub.services.auth import HubOAuth, _ExpiringDict
from tornado.httpclient import HTTPClientError
from tornado.ioloop import PeriodicCallback
from tornado.web import HTTPError
from tornado.websocket import WebSocketHandler
from traitlets import Float
from traitlets.config import LoggingConfigurable

#: the websocket close code for "access revoked" (policy violation)
CLOSE_REVOKED = 1008


class TieredCache(_ExpiringDict):
    """``HubAuth``'s answer cache, with a shorter life for answers about anyone but ``owner``
    (a user model whose ``name`` is not the owner's, or a refusal)."""

    def __init__(self, owner: str, max_age: float, guest_max_age: float):
        super().__init__(max_age)
        self.owner = owner
        self.guest_max_age = guest_max_age

    def _max_age_of(self, value) -> float:
        if isinstance(value, dict) and value.get("name") == self.owner \
                and value.get("kind", "user") == "user":
            return self.max_age
        return self.guest_max_age

    def _expire(self, key, now: float) -> None:
        if key in self.values:
            limit = self._max_age_of(self.values[key])
            if limit > 0 and now - self.timestamps[key] > limit:
                self.values.pop(key)
                self.timestamps.pop(key)

    def _check_age(self, key):
        self._expire(key, time.monotonic())
        self._maybe_purge()

    def purge_expired(self):
        now = self._last_purge = time.monotonic()
        for key in list(self.timestamps):
            self._expire(key, now)


def cache_key(token: str, session_id: str = "") -> str:
    """The key ``HubAuth.user_for_token`` caches a token's answer under."""
    return "token:{}:{}".format(session_id,
                                hashlib.sha256(token.encode("utf8", "replace")).hexdigest())


def cache_key_of(token: str) -> str:
    """A key for a token checked without HubAuth's cache (no session id known)."""
    return cache_key(token)


class RevocationGuard(LoggingConfigurable):
    """Short cache for guests, and re-checked websockets, in one single-user server."""

    guest_cache_max_age = Float(
        2.0, min=0.0, max=5.0,
        help="""Seconds the server may reuse the hub's answer about a token that is not the
        owner's (a helper through a share, an admin): the longest a revoked helper's HTTP
        requests still pass. At most 5. Example: 2.0.""",
    ).tag(config=True)

    check_interval = Float(
        2.0, min=0.5, max=5.0,
        help="""Seconds between re-checks of the tokens of open websockets not the owner's
        (kernel, terminal, collaboration): the longest a revoked helper's open tab still
        works. At most 5. Example: 2.0.""",
    ).tag(config=True)

    hub_outage_grace = Float(
        3600.0, min=0.0,
        help="""Seconds the owner's requests may go on with the hub's last answer about
        their token while the hub does not answer (restart, crash): the session keeps
        working through a hub outage of up to this long. Others get 503 at once.
        Example: 3600.""",
    ).tag(config=True)

    def install(self, serverapp) -> bool:
        """Hook into the server's hub auth; False (and nothing changed) outside a hub."""
        idp = serverapp.identity_provider
        hub_auth = getattr(idp, "hub_auth", None)
        if not isinstance(hub_auth, HubOAuth):
            self.log.info("revocation guard: not a JupyterHub server, nothing to do")
            return False
        self.hub_auth = hub_auth
        self.owner = os.environ.get("JUPYTERHUB_USER", "")
        hub_auth.cache = TieredCache(self.owner, hub_auth.cache_max_age,
                                     self.guest_cache_max_age)
        self.sockets: weakref.WeakKeyDictionary[WebSocketHandler, tuple[str, str, str]] = \
            weakref.WeakKeyDictionary()
        self._callback: PeriodicCallback | None = None
        get_user = idp.get_user

        async def get_user_and_track(handler):
            user = await get_user(handler)
            if user is not None and isinstance(handler, WebSocketHandler) \
                    and user.username != self.owner:
                self.track(handler, user.username)
            return user

        idp.get_user = get_user_and_track
        self._confirmed: dict[str, tuple[dict, float]] = {}  # cache key -> owner, when
        hub_auth._check_hub_authorization = self._through_outages(
            hub_auth._check_hub_authorization)
        self.log.info("revocation guard: %s's answers cached %s s, others' %s s; others' "
                      "websockets re-checked every %s s", self.owner, hub_auth.cache_max_age,
                      self.guest_cache_max_age, self.check_interval)
        return True

    def _is_owner(self, model) -> bool:
        return isinstance(model, dict) and model.get("name") == self.owner \
            and model.get("kind", "user") == "user"

    def _through_outages(self, check):
        """``HubAuth._check_hub_authorization`` that remembers when the hub last confirmed
        the owner's tokens and, while the hub does not answer (HubAuth's 500/502/503),
        answers with that for the owner and 503 for anyone else."""
        async def checked(url, api_token, cache_key=None, use_cache=True):
            key = cache_key or cache_key_of(api_token)
            try:
                model = await check(url, api_token, cache_key=cache_key, use_cache=use_cache)
            except HTTPError as e:
                if e.status_code not in (500, 502, 503):
                    raise
                known, at = self._confirmed.get(key, (None, 0.0))
                if known is not None and time.monotonic() - at <= self.hub_outage_grace:
                    self.log.warning("revocation guard: the hub does not answer; %s goes on "
                                     "as confirmed %.0f s ago", self.owner,
                                     time.monotonic() - at)
                    return known
                raise HTTPError(503, "The hub is not answering right now (it may be "
                                "restarting): try again in a minute.") from e
            if self._is_owner(model):
                self._confirmed[key] = (model, time.monotonic())
            else:
                self._confirmed.pop(key, None)
            return model
        return checked

    def track(self, handler: WebSocketHandler, username: str) -> None:
        token = self.hub_auth.get_token(handler)
        if not token:
            return
        self.sockets[handler] = (token, self.hub_auth.get_session_id(handler) or "", username)
        if self._callback is None:
            self._callback = PeriodicCallback(self.check, self.check_interval * 1000)
            self._callback.start()

    async def check(self) -> list[str]:
        """Close the open websockets whose token no longer reaches this server; returns the
        names of the users whose sockets were closed."""
        by_token: dict[str, list[WebSocketHandler]] = {}
        for handler, (token, _, _) in list(self.sockets.items()):
            if handler.ws_connection is None or handler.ws_connection.is_closing():
                self.sockets.pop(handler, None)
                continue
            by_token.setdefault(token, []).append(handler)
        closed = []
        for token, handlers in by_token.items():
            try:
                model = await self.hub_auth.user_for_token(token, use_cache=False, sync=False)
            except (HTTPError, HTTPClientError, OSError) as e:  # the hub away: keep them
                self.log.warning("revocation guard: cannot ask the hub (%s); keeping %d "
                                 "socket(s) open", e, len(handlers))
                continue
            if model and self.hub_auth.check_scopes(self.hub_auth.access_scopes, model):
                continue
            for handler in handlers:
                _, session_id, username = self.sockets.pop(handler, ("", "", "?"))
                # the next HTTP request or reconnect sees the refusal without asking again
                self.hub_auth.cache[cache_key(token, session_id)] = model
                self.log.warning("revocation guard: %s lost access to %s's server; closing "
                                 "%s", username, self.owner, handler.request.path)
                handler.close(CLOSE_REVOKED, "access to this server was revoked")
                closed.append(username)
        return closed
