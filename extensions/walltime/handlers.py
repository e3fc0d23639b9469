"""``{base_url}workbench/walltime``: the JupyterLab side's way to the hub's walltime API.

The browser talks to its own server (same origin, the server's own login); the server asks
the hub with ``JUPYTERHUB_API_TOKEN`` and hands the hub's answer back unchanged, errors
included (``{"status": 400, "message": "Cannot extend: ..."}``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from urllib.parse import quote

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from workbench.webinput import json_body

HUB_TIMEOUT_S = 30


@dataclass(frozen=True)
class HubSession:
    """Where this server's walltime lives on the hub, from the environment the hub gave it."""

    api_url: str
    token: str
    user: str
    server: str
    tls: tuple[str | None, str | None, str | None] = (None, None, None)  # internal_ssl files

    @classmethod
    def from_env(cls, env=os.environ) -> HubSession | None:
        api, token, user = (env.get(k, "") for k in (
            "JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_USER"))
        if not (api and token and user):
            return None
        tls = tuple(env.get(f"JUPYTERHUB_SSL_{k}") for k in ("CERTFILE", "KEYFILE", "CLIENT_CA"))
        return cls(api.rstrip("/"), token, user, env.get("JUPYTERHUB_SERVER_NAME", ""), tls)

    @property
    def path(self) -> str:
        """This server's walltime, relative to the hub's API."""
        return f"workbench/walltime/{quote(self.user, safe='')}/{quote(self.server, safe='')}"

    @property
    def url(self) -> str:
        return f"{self.api_url}/{self.path}"

    def hub(self):
        """The hub's API through :class:`workbench.hubapi.HubClient` (imported here, at the
        first walltime call: not in every server's start)."""
        from workbench.hubapi import HubClient, TLSFiles
        return HubClient(self.api_url, self.token, timeout=HUB_TIMEOUT_S,
                         tls=TLSFiles(*self.tls) if any(self.tls) else None)


class WalltimeHandler(APIHandler):
    @web.authenticated
    async def get(self):
        await self._forward("GET")

    @web.authenticated
    async def post(self):
        body = json_body(self)
        await self._forward("POST", json.dumps(body).encode())

    async def _forward(self, method: str, body: bytes | None = None) -> None:
        from workbench.hubapi import HubAPIError
        session = HubSession.from_env()
        if session is None:
            raise web.HTTPError(404, "this server was not started by a JupyterHub")
        try:
            reply = await session.hub().arequest(method, session.path, body=body, ok=None)
        except HubAPIError as e:  # no HTTP answer at all
            raise web.HTTPError(502, f"the hub did not answer: {e.message}") from e
        self.set_status(reply.status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(reply.data) if reply.data is not None else b"")


def setup_handlers(serverapp) -> None:
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(
        ".*$", [(url_path_join(base, "workbench", "walltime"), WalltimeHandler)])
