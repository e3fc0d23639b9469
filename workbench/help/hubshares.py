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

import json
import logging
import os
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from .store import HelpError

log = logging.getLogger(__name__)

HUB_TIMEOUT_S = 20


def _q(name: str) -> str:
    return quote(name, safe="")


class HubShares:
    """Async client of the hub's sharing and user API with one token (the help service's)."""

    def __init__(self, api_url: str | None = None, token: str | None = None):
        self.api_url = (api_url or os.environ["JUPYTERHUB_API_URL"]).rstrip("/")
        self.token = token or os.environ["JUPYTERHUB_API_TOKEN"]

    async def _call(self, method: str, path: str, body: dict | None = None,
                    ok: tuple[int, ...] = (200, 201, 204)) -> tuple[int, object]:
        request = HTTPRequest(
            f"{self.api_url}/{path}", method=method, request_timeout=HUB_TIMEOUT_S,
            body=json.dumps(body) if body is not None else None,
            headers={"Authorization": f"token {self.token}",
                     "Content-Type": "application/json"})
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
        data = json.loads(response.body) if response.body else None
        if response.code not in ok:
            message = data.get("message") if isinstance(data, dict) else response.error
            raise HelpError(502 if response.code in (0, 599) or response.code >= 500 else
                            response.code, f"the hub refused {method} {path}: {message}")
        return response.code, data

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
        code, data = await self._call("GET", f"shares/{_q(owner)}/{_q(server)}",
                                      ok=(200, 404))
        if code == 404:
            return []
        found = []
        for share in data.get("items", []) if isinstance(data, dict) else data:
            kind = "user" if share.get("user") else "group"
            found.append({"kind": kind, "name": share[kind]["name"],
                          "scopes": share.get("scopes", []),
                          "created_at": share.get("created_at")})
        return found
