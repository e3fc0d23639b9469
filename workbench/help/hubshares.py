"""The hub's own sharing API, as the help service uses it (JupyterHub 6.1).

A share gives a user or a group ``access:servers!server=OWNER/SERVER`` and nothing else.
The hub recomputes a token's scopes on every request, so a revoked share is refused by the hub
at once; what keeps a helper in longer is the single-user server's cache and its open
websockets (:mod:`extensions.revocation`).

- grant: ``POST /hub/api/shares/{owner}/{server}`` ``{"user": "sam"}`` (``helper`` is
  ``user:NAME`` or ``group:NAME``);
- revoke: ``DELETE /hub/api/users/{user}/shared/{owner}/{server}`` (that person's share only;
  the owner's other shares stay), ``DELETE /hub/api/groups/{group}/shared/...`` for a group;
- list: ``GET /hub/api/shares/{owner}/{server}``.
"""

from __future__ import annotations

import asyncio
import logging
import os

from ..hubapi import HubAPIError, HubClient
from ..hubapi import q as _q
from .store import HelpError

log = logging.getLogger(__name__)

HUB_TIMEOUT_S = 20


class HubShares:
    """The hub's sharing and user API with one token (the help service's), from coroutines."""

    def __init__(self, api_url: str | None = None, token: str | None = None):
        self.hub = HubClient(api_url or os.environ["JUPYTERHUB_API_URL"],
                             token or os.environ["JUPYTERHUB_API_TOKEN"],
                             timeout=HUB_TIMEOUT_S, maxsize=10)

    async def _call(self, method: str, path: str, body: dict | None = None,
                    ok: tuple[int, ...] = (200, 201, 204)) -> tuple[int, object]:
        try:
            reply = await self.hub.arequest(method, path, json=body, ok=ok)
        except HubAPIError as e:
            raise HelpError(502 if e.unreachable else e.status,
                            f"the hub refused {method} {path}: {e.message}") from e
        return reply.status, reply.data

    async def server(self, owner: str, server: str = "", ready: bool = True) -> dict | None:
        """The owner's server model if it is running (and ready, with ``ready``), else None.
        A server being started, re-adopted after a hub restart, or stopped is not ready but
        still there."""
        code, user = await self._call("GET", f"users/{_q(owner)}", ok=(200, 404))
        if code == 404:
            return None
        model = (user.get("servers") or {}).get(server)
        return model if model and (model.get("ready") or not ready) else None

    async def grant(self, owner: str, server: str, helper: str) -> dict:
        kind, _, name = helper.partition(":")
        _, share = await self._call("POST", f"shares/{_q(owner)}/{_q(server)}", {kind: name})
        log.info("shared %s/%s with %s", owner, server, helper)
        return share

    async def revoke(self, owner: str, server: str, helper: str) -> bool:
        """Remove ``helper``'s share of the server; False if there was none."""
        kind, _, name = helper.partition(":")
        collection = "groups" if kind == "group" else "users"
        code, _ = await self._call(
            "DELETE", f"{collection}/{_q(name)}/shared/{_q(owner)}/{_q(server)}",
            ok=(204, 404))
        log.info("revoked %s's share of %s/%s (%s)", helper, owner, server,
                 "removed" if code == 204 else "none left")
        return code == 204

    async def shares(self, owner: str, server: str = "") -> list[dict]:
        """Who has access to the server now: ``[{"kind": "group", "name": "support",
        "scopes": [...], "created_at": ...}]``."""
        try:
            items = await asyncio.to_thread(
                lambda: list(self.hub.paged(f"shares/{_q(owner)}/{_q(server)}")))
        except HubAPIError as e:
            if e.status == 404:
                return []
            raise HelpError(502 if e.unreachable else e.status,
                            f"the hub refused to list the shares of {owner}/{server}: "
                            f"{e.message}") from e
        found = []
        for share in items:
            kind = "user" if share.get("user") else "group"
            found.append({"kind": kind, "name": share[kind]["name"],
                          "scopes": share.get("scopes", []),
                          "created_at": share.get("created_at")})
        return found
