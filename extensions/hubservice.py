"""The recipe every web hub service of the workbench follows (catalogue, help, ...).

A service is a Tornado app behind the hub's proxy at ``/services/NAME/``. Who may use it is
the hub's decision: ``HubOAuth`` accepts a request only when the caller's token (API header,
or the OAuth cookie of a browser) carries ``access:services!service=NAME``, which the hub
grants by role (:mod:`workbench.services`). No code here decides who gets in.

Write handlers as subclasses of :class:`APIHandler` (JSON in and out) or :class:`PageHandler`
(HTML, redirects a browser through the hub's login), list them with paths relative to the
service prefix, and call :func:`serve`::

    serve([(r"api/things", ThingsHandler)], settings={"store": store})

``workbench up`` starts the process with the environment :func:`workbench.services.process_env`
gives it (hub API URL, the service's token, OAuth client and prefix).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import urllib.parse
from typing import Any

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpserver import HTTPServer

from workbench.webinput import MAX_BODY, BadInput, read_json, whole

log = logging.getLogger(__name__)

#: the largest body a service reads to its end (keeping only ``MAX_BODY`` of it) so that the
#: caller gets its 413 answer; a larger one is refused at once and its connection closed
DRAIN_BODY = 64 * 1024 * 1024


class ServiceError(web.HTTPError):
    """A refusal with a message for the caller: ``raise ServiceError(404, "no dataset x")``."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(status, message)
        self.message = message
        self.extra = extra


@web.stream_request_body
class APIHandler(HubOAuthenticated, web.RequestHandler):
    """A JSON endpoint. Every method needs a hub user with access to the service: without
    credentials 401, with a token or cookie lacking the access scope 403, each as
    ``{"message": ...}``. Errors are JSON too, never a traceback: a refused input
    (:class:`~workbench.webinput.BadInput`) is its 400/413 with the message.

    The body streams in: a body over ``MAX_BODY`` is read to its end but not kept, and
    :meth:`json_body` answers 413. Refusing it unread would close the connection under the
    caller's upload, and the hub's proxy would answer its own 503 page instead."""

    # xsrf: HubOAuthenticated decides (a valid token needs none; a browser's cookie on a
    # POST/PUT/DELETE needs the _xsrf token, else the cookie is not accepted); no override

    async def prepare(self):
        self._body, self._body_size = bytearray(), 0
        self.request.connection.set_max_body_size(DRAIN_BODY)
        declared = whole(self.request.headers.get("Content-Length", ""))
        if declared is not None and declared > DRAIN_BODY:
            raise ServiceError(413, f"the request body is over {MAX_BODY // 1024} KiB")
        if self.current_user is None:
            has_credentials = bool(self.request.headers.get("Authorization") or
                                   self.get_cookie(self.hub_auth.cookie_name))
            if has_credentials:
                raise ServiceError(403, f"you may not use the {self.service_name} service: "
                                   "the token is not valid or lacks "
                                   f"{self.hub_auth.access_scopes}, or the browser's request "
                                   "lacks its xsrf token")
            raise ServiceError(401, "log in to the hub, or send a hub token "
                               "(Authorization: token ...)")
        self._prepared = True  # the method runs once the whole body is in

    @property
    def service_name(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_NAME", "this")

    @property
    def user(self) -> str:
        """The caller's hub user name."""
        return self.current_user["name"]

    @property
    def user_groups(self) -> set[str]:
        return set(self.current_user.get("groups") or ())

    @property
    def is_admin(self) -> bool:
        return bool(self.current_user.get("admin"))

    def data_received(self, chunk: bytes) -> None:
        self._body_size += len(chunk)
        if len(self._body) <= MAX_BODY:
            self._body += chunk[:MAX_BODY + 1 - len(self._body)]

    def json_body(self) -> Any:
        """The request body as JSON ({} when empty), read by
        :func:`workbench.webinput.read_json`: 413 over ``MAX_BODY``, 400 when not JSON or
        beyond its limits."""
        if self._body_size > MAX_BODY:
            raise ServiceError(413, f"the request body is over {MAX_BODY // 1024} KiB")
        data = read_json(bytes(self._body))
        return {} if data is None else data

    #: the exceptions answered as refusals, each with ``status``, ``message`` (and ``extra``)
    refusals: tuple[type[Exception], ...] = (BadInput,)

    def _handle_request_exception(self, e):
        if isinstance(e, self.refusals):
            e = ServiceError(e.status, e.message, **getattr(e, "extra", {}))
            self.send_error(e.status_code, exc_info=(type(e), e, None))
            return
        super()._handle_request_exception(e)

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(data, default=str))

    def write_error(self, status_code: int, **kwargs):
        if _body_unread(self):
            # Tornado closes the connection after a response sent before the body was read;
            # say so, or the proxy reuses that connection for its next request and answers
            # that one with its own 503 page
            self.set_header("Connection", "close")
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ServiceError):
            body = {"message": exc.message, **exc.extra}
        elif isinstance(exc, web.HTTPError) and exc.log_message:
            body = {"message": exc.log_message % exc.args if exc.args else exc.log_message}
        else:
            body = {"message": self._reason}
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


def _body_unread(handler: web.RequestHandler) -> bool:
    """A streaming handler answers before Tornado has read the request to its end: it was
    refused in ``prepare`` (which runs as the headers arrive), body or no body. Tornado then
    closes the connection after the answer. A handler that does not stream, or one whose
    ``prepare`` passed, has its request read before it answers."""
    return bool(getattr(handler, "_stream_request_body", False)) and \
        not getattr(handler, "_prepared", False)


class OpenAPIHandler(APIHandler):
    """``GET api/openapi.json``: the service's OpenAPI 3 document (``settings["openapi"]``)."""

    def get(self):
        self.write_json(self.settings["openapi"])


class NotFoundHandler(web.RequestHandler):
    """Every path the service does not serve: a JSON 404 (Tornado's own is an HTML page,
    which a JSON client cannot read)."""

    def prepare(self):
        raise ServiceError(404, "nothing here: the service's API is described at "
                                "api/openapi.json")

    write_error = APIHandler.write_error


class PageHandler(HubOAuthenticated, web.RequestHandler):
    """An HTML page: a browser without a hub login is sent through the hub's OAuth; a user
    the hub did not grant access gets 403."""


def make_app(handlers: list[tuple], settings: dict | None = None,
             prefix: str | None = None) -> web.Application:
    """The Tornado app: ``handlers`` (paths relative to the service prefix) plus the OAuth
    callback, with the hub's OAuth settings from the environment."""
    prefix = prefix or os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    routes = [(url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler)]
    routes += [(url_path_join(prefix, path), *rest) for path, *rest in handlers]
    hub_auth = HubOAuth(cache_max_age=5)
    return web.Application(
        routes,
        default_handler_class=NotFoundHandler,
        hub_auth=hub_auth,
        cookie_secret=os.urandom(32),
        xsrf_cookies=False,
        **(settings or {}),
    )


def listen_address() -> tuple[str, int]:
    """Host and port from ``JUPYTERHUB_SERVICE_URL`` (set by ``workbench up``)."""
    url = urllib.parse.urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    return url.hostname or "127.0.0.1", url.port or 80


def listen(app: web.Application, port: int, host: str = "127.0.0.1",
           sockets: list | None = None) -> HTTPServer:
    """Serve ``app`` on ``host:port`` (or on already bound ``sockets``) as every service
    does: API handlers read bodies up to ``DRAIN_BODY`` (they raise the limit per request)
    and answer 413 over ``MAX_BODY``; any other handler reads no more than ``MAX_BODY``."""
    server = HTTPServer(app, max_body_size=MAX_BODY)
    if sockets:
        server.add_sockets(sockets)
    else:
        server.listen(port, address=host)
    return server


async def _serve(app: web.Application, before=None, started=None) -> None:
    """Run ``before()`` (awaited), then listen, then call ``started()``; until SIGTERM."""
    if before is not None:
        await before()
    host, port = listen_address()
    server = listen(app, port, host)
    log.info("%s listening on %s:%s", os.environ.get("JUPYTERHUB_SERVICE_NAME"), host, port)
    if started is not None:
        started()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()


def serve(handlers: list[tuple], settings: dict | None = None, before=None,
          started=None) -> None:
    """Run the service until SIGTERM: ``handlers`` as in :func:`make_app`; ``before`` (an
    async callable) runs before it listens, ``started`` (a callable) right after."""
    logging.basicConfig(level=logging.INFO,
                        format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s")
    asyncio.run(_serve(make_app(handlers, settings), before, started))
