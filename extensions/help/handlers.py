"""``{base_url}workbench/help``: JupyterLab's way to the help service, for the session's owner.

The browser talks to its own server; the server calls the help service
(``AIFACTORY_SERVICES["help"]``) with ``JUPYTERHUB_API_TOKEN``, which the hub lets reach
that service (``access:services!service=help``) as the session's owner. A helper who joined
through a share gets 403 here: only the owner asks, changes or stops sharing.

- ``GET``: the owner's help requests and who has access to this server now;
- ``POST`` ``{"message", "notebook", "minutes"}``: ask for help with this server;
- ``DELETE workbench/help/{id}``: stop sharing.

While the help service does not answer (no connection, a timeout, the proxy's 502/503 page)
or fails, each of them answers 503 ``{"message": "The help service is not answering (...);
try again in a minute."}``, which JupyterLab shows as it is.
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

SERVICE_TIMEOUT_S = 30


class HelpUnavailable(RuntimeError):
    """The help service did not answer, or failed: the message says so for the user;
    ``detail``: the request and what the HTTP client said, for support."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True)
class HelpClient:
    """The help service as this session reaches it, from the environment the hub gave it."""

    url: str  # e.g. http://10.0.0.5:8092/services/help/
    token: str
    user: str
    server: str

    @classmethod
    def from_env(cls, env=os.environ) -> HelpClient | None:
        try:
            url = json.loads(env.get("AIFACTORY_SERVICES") or "{}").get("help", "")
        except json.JSONDecodeError:
            return None
        token, user = env.get("JUPYTERHUB_API_TOKEN", ""), env.get("JUPYTERHUB_USER", "")
        if not (url and token and user):
            return None
        return cls(url.rstrip("/") + "/", token, user, env.get("JUPYTERHUB_SERVER_NAME", ""))

    def hub(self):
        """The help service through :class:`workbench.hubapi.HubClient` (imported here, when
        the owner first asks: not in every server's start)."""
        from workbench.hubapi import HubClient
        return HubClient(self.url, self.token, timeout=SERVICE_TIMEOUT_S)

    def request(self, method: str, path: str, body: bytes | None = None,
                timeout: float | None = None) -> tuple[int, dict]:
        """The help service's answer (status, JSON object; {} for anything else), its
        refusals included; :class:`HelpUnavailable` when it does not answer or fails."""
        from workbench.hubapi import HubAPIError, outage
        hub = self.hub()
        try:
            reply = hub.request(method, path, body=body, ok=None, timeout=timeout)
        except HubAPIError as e:  # no answer: a sentence, not urllib3's traceback
            raise HelpUnavailable(e.outage(WHAT) or str(e), detail=str(e)) from None
        down = outage(WHAT, reply.status, reply.message, reply.json)
        if down:
            raise HelpUnavailable(down, detail=f"{method} {hub.url_of(path)}: HTTP "
                                  f"{reply.status}: {reply.message}")
        return reply.status, reply.data if isinstance(reply.data, dict) else {}

    async def arequest(self, method: str, path: str, body: bytes | None = None,
                       timeout: float | None = None) -> tuple[int, dict]:
        """:meth:`request` from a coroutine, without blocking its loop."""
        import asyncio
        return await asyncio.to_thread(self.request, method, path, body, timeout)


#: how the help service is named to the user
WHAT = "The help service"


class _Forwarder(APIHandler):
    def client(self) -> HelpClient:
        client = HelpClient.from_env()
        if client is None:
            raise web.HTTPError(404, "no help service for this server (not started by the hub)")
        if self.current_user.username != client.user:
            raise web.HTTPError(403, f"only {client.user} asks for help with or stops sharing "
                                     "this server")
        return client

    async def fetch(self, client: HelpClient, method: str, path: str,
                    body: bytes | None = None) -> tuple[int, dict]:
        try:
            return await client.arequest(method, path, body)
        except HelpUnavailable as e:
            self.log.warning("help service: %s", e.detail)
            raise web.HTTPError(503, str(e)) from None

    def reply(self, code: int, data: dict) -> None:
        self.set_status(code)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))


class HelpHandler(_Forwarder):
    @web.authenticated
    async def get(self):
        client = self.client()
        code, data = await self.fetch(client, "GET", "api/requests")
        if code != 200:
            return self.reply(code, data)
        mine = [r for r in data["requests"]
                if (r["owner"], r["server"]) == (client.user, client.server)]
        _, access = await self.fetch(client, "GET",
                                     f"api/access?server={quote(client.server, safe='')}")
        self.reply(200, {"user": client.user, "server": client.server, "requests": mine,
                         "access": access.get("access", [])})

    @web.authenticated
    async def post(self):
        client = self.client()
        body = json_body(self) or {}
        if isinstance(body, dict):
            body = {**body, "server": client.server}
        self.reply(*await self.fetch(client, "POST", "api/requests", json.dumps(body).encode()))


class HelpRequestHandler(_Forwarder):
    @web.authenticated
    async def delete(self, request_id):
        client = self.client()
        self.reply(*await self.fetch(client, "DELETE", f"api/requests/{request_id}"))


def setup_handlers(serverapp) -> None:
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*$", [
        (url_path_join(base, "workbench", "help"), HelpHandler),
        (url_path_join(base, "workbench", "help", r"(\d+)"), HelpRequestHandler),
    ])
