"""``{base_url}workbench/walltime``: the JupyterLab side's way to the hub's walltime API.

The browser talks to its own server (same origin, the server's own login); the server asks
the hub with ``JUPYTERHUB_API_TOKEN`` and hands the hub's answer back unchanged, errors
included (``{"status": 400, "message": "Cannot extend: ..."}``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from urllib.parse import quote

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

HUB_TIMEOUT_S = 30


@dataclass(frozen=True)
class HubSession:
    """Where this server's walltime lives on the hub, from the environment the hub gave it."""

    api_url: str
    token: str
    user: str
    server: str
    ssl: dict = field(default_factory=dict)  # client cert, key, CA: the hub's internal_ssl

    @classmethod
    def from_env(cls, env=os.environ) -> HubSession | None:
        api, token, user = (env.get(k, "") for k in (
            "JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_USER"))
        if not (api and token and user):
            return None
        ssl = {}
        if env.get("JUPYTERHUB_SSL_CERTFILE"):
            ssl = {"client_cert": env["JUPYTERHUB_SSL_CERTFILE"],
                   "client_key": env.get("JUPYTERHUB_SSL_KEYFILE"),
                   "ca_certs": env.get("JUPYTERHUB_SSL_CLIENT_CA")}
        return cls(api.rstrip("/"), token, user, env.get("JUPYTERHUB_SERVER_NAME", ""), ssl)

    @property
    def url(self) -> str:
        return (f"{self.api_url}/workbench/walltime/{quote(self.user, safe='')}/"
                f"{quote(self.server, safe='')}")

    def request(self, method: str, body: bytes | None = None) -> HTTPRequest:
        return HTTPRequest(self.url, method=method, body=body, request_timeout=HUB_TIMEOUT_S,
                           headers={"Authorization": f"token {self.token}",
                                    "Content-Type": "application/json"}, **self.ssl)


class WalltimeHandler(APIHandler):
    @web.authenticated
    async def get(self):
        await self._forward("GET")

    @web.authenticated
    async def post(self):
        body = self.get_json_body()
        await self._forward("POST", json.dumps(body).encode())

    async def _forward(self, method: str, body: bytes | None = None) -> None:
        session = HubSession.from_env()
        if session is None:
            raise web.HTTPError(404, "this server was not started by a JupyterHub")
        response = await AsyncHTTPClient().fetch(session.request(method, body),
                                                 raise_error=False)
        if response.code == 599:  # no HTTP answer at all
            raise web.HTTPError(502, f"the hub did not answer: {response.error}")
        self.set_status(response.code)
        self.set_header("Content-Type", "application/json")
        self.finish(response.body)


def setup_handlers(serverapp) -> None:
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(
        ".*$", [(url_path_join(base, "workbench", "walltime"), WalltimeHandler)])
