"""The one client of the hub's REST API and of its services, with a hub token.

Everything that talks to the hub or to a hub service with a token uses :class:`HubClient`:
the reconciler, the dashboards, the help desk, the catalogue client, the single-user
server's extensions (walltime, help) and the job-side launcher (``workbench-singleuser``).
One HTTP library (urllib3, what requests runs on: ~1 ms less per call than requests,
measured in ``benchmarks/catalogue.py``), one ``Authorization: token ...`` header, the
hub's pagination, and one error type, :class:`HubAPIError`.

    hub = HubClient.from_env()                      # JUPYTERHUB_API_URL, _TOKEN, _SSL_*
    for user in hub.paged("users", {"state": "active"}):
        ...
    reply = hub.request("POST", "shares/alice/", json={"user": "sam"})
    reply = await hub.arequest("GET", "users/alice")   # from a tornado handler

An answer whose status is not in ``ok`` raises :class:`HubAPIError` with the hub's own
``message``; ``ok=None`` returns every answer (a handler that passes the status on). No
answer at all (refused, timed out, TLS) is ``HubAPIError`` with ``status == 0`` and the
reason in plain words. :func:`outage` words a service that is down for its users.
"""

from __future__ import annotations

import json as _json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import urllib3

#: JupyterHub answers list endpoints with ``{"items", "_pagination"}`` given this type
PAGINATION = "application/jupyterhub-pagination+json"
OK = (200, 201, 204)


def q(name: str) -> str:
    """One path segment (a user or server name) quoted for the hub's URLs."""
    return quote(name, safe="")


class HubAPIError(RuntimeError):
    """The hub (or a service) refused a request, or did not answer (``status == 0``).
    ``json``: the answer's body was JSON (or empty), not a proxy's or server's own page."""

    def __init__(self, method: str, url: str, status: int, message: str, json: bool = True):
        self.method, self.url, self.status, self.message = method, url, status, message
        self.json = json
        what = f"HTTP {status}" if status else "no answer"
        super().__init__(f"{method} {url}: {what}: {message}")

    @property
    def unreachable(self) -> bool:
        """No answer, or the hub's proxy or the hub itself failing (worth a retry)."""
        return self.status == 0 or self.status >= 500

    def outage(self, what: str) -> str | None:
        """:func:`outage` of this error."""
        return outage(what, self.status, self.message, self.json)


def outage(what: str, status: int, message: str, json: bool = True) -> str | None:
    """What to tell a user when ``what`` (``"The catalogue service"``) answered ``status``
    (0: not at all; ``message`` then says why) with ``message`` (``json``: in a JSON body):
    not answering (no connection, a timeout, or the proxy's 502/503/504 page for a service
    that is down), or failing (any other 5xx, with the service's own message); None for
    anything else (a refusal is the caller's to word)."""
    if status == 0:
        return f"{what} is not answering ({message}); try again in a minute."
    if status in (502, 503, 504) and not (json and message):
        return f"{what} is not answering (HTTP {status}); try again in a minute."
    if status >= 500:
        said = f": {message}" if json and message else ""
        return f"{what} failed (HTTP {status}{said}); try again in a minute."
    return None


def _no_answer(e: urllib3.exceptions.HTTPError, timeout: float) -> str:
    """Why a request got no answer, in plain words (urllib3's own text names its objects)."""
    if isinstance(e, urllib3.exceptions.NewConnectionError):  # before: it is a timeout too
        return "the connection was refused" if "refused" in str(e).lower() else \
            "no connection: " + str(e).rpartition(": ")[2]
    if isinstance(e, urllib3.exceptions.ConnectTimeoutError):
        return f"no connection within {timeout:g} s"
    if isinstance(e, urllib3.exceptions.TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(e, urllib3.exceptions.SSLError):
        return f"TLS failed: {e}"
    if isinstance(e, urllib3.exceptions.ProtocolError):
        return "the connection closed without an answer"
    return str(e)


@dataclass(frozen=True)
class Reply:
    status: int
    data: Any  # the decoded JSON; {"message": text} for a body that is not JSON; None empty
    json: bool = True  # the body was JSON (or empty)

    @property
    def message(self) -> str:
        if isinstance(self.data, dict) and self.data.get("message"):
            return str(self.data["message"])
        return ""


@dataclass(frozen=True)
class TLSFiles:
    """The hub's internal_ssl files, as JupyterHub gives them to a single-user server."""

    cert: str | None = None
    key: str | None = None
    ca: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> TLSFiles | None:
        if not (env.get("JUPYTERHUB_SSL_CERTFILE") or env.get("JUPYTERHUB_SSL_CLIENT_CA")):
            return None
        return cls(env.get("JUPYTERHUB_SSL_CERTFILE"), env.get("JUPYTERHUB_SSL_KEYFILE"),
                   env.get("JUPYTERHUB_SSL_CLIENT_CA"))


class HubClient:
    """A client of ``url`` (the hub's API, ``.../hub/api``, or a service's URL) with one token.
    Thread-safe (urllib3's pool); :meth:`arequest` runs a call off the event loop."""

    def __init__(self, url: str, token: str, *, timeout: float = 30,
                 tls: TLSFiles | None = None, maxsize: int = 4):
        if not token:
            raise ValueError(f"no token for {url}: set JUPYTERHUB_API_TOKEN")
        self.url = url.rstrip("/") + "/"
        self.token = token
        self.timeout = timeout
        self.headers = {"Authorization": f"token {token}", "Accept": "application/json"}
        tls_kw = {}
        if tls:
            tls_kw = {"cert_file": tls.cert, "key_file": tls.key, "ca_certs": tls.ca,
                      "cert_reqs": "CERT_REQUIRED" if tls.ca else "CERT_NONE"}
        self.http = urllib3.PoolManager(maxsize=maxsize, retries=False, **tls_kw)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, **kw) -> HubClient | None:
        """The hub as this process was given it (a service, a single-user server, a job);
        None without ``JUPYTERHUB_API_URL`` and ``JUPYTERHUB_API_TOKEN``."""
        url, token = env.get("JUPYTERHUB_API_URL", ""), env.get("JUPYTERHUB_API_TOKEN", "")
        if not (url and token):
            return None
        kw.setdefault("tls", TLSFiles.from_env(env))
        return cls(url, token, **kw)

    def url_of(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        url = self.url + path.lstrip("/")
        return url + "?" + urlencode(params) if params else url

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json: Any = None, body: bytes | None = None,
                headers: Mapping[str, str] | None = None,
                ok: tuple[int, ...] | None = OK, timeout: float | None = None) -> Reply:
        url = self.url_of(path, params)
        all_headers = {**self.headers, **(headers or {})}
        if json is not None:
            body = _json.dumps(json).encode()
        if body is not None:
            all_headers.setdefault("Content-Type", "application/json")
        try:
            r = self.http.request(method, url, body=body, headers=all_headers,
                                  timeout=timeout or self.timeout)
        except urllib3.exceptions.HTTPError as e:
            raise HubAPIError(method, url, 0, _no_answer(e, timeout or self.timeout)) from e
        is_json = True
        try:
            data = _json.loads(r.data) if r.data else None
        except ValueError:
            data, is_json = {"message": r.data[:300].decode(errors="replace")}, False
        reply = Reply(r.status, data, is_json)
        if ok is not None and r.status not in ok:
            raise HubAPIError(method, url, r.status, reply.message or r.reason or "", is_json)
        return reply

    def get(self, path: str, **kw) -> Any:
        return self.request("GET", path, **kw).data

    def paged(self, path: str, params: Mapping[str, Any] | None = None,
              page: int = 200) -> Iterator[dict]:
        """Every item of a list endpoint (``users``, ``groups``, ``shares/...``), page by
        page with the hub's pagination; an old hub's plain list is read as one page."""
        params = {**(params or {}), "limit": str(page), "offset": "0"}
        while True:
            body = self.get(path, params=params, headers={"Accept": PAGINATION})
            if not isinstance(body, dict):
                yield from body or []
                return
            yield from body.get("items", [])
            nxt = (body.get("_pagination") or {}).get("next")
            if not nxt:
                return
            params = {**params, "offset": str(nxt["offset"])}

    async def arequest(self, method: str, path: str, **kw) -> Reply:
        """:meth:`request` from a coroutine (a tornado handler), without blocking its loop."""
        import asyncio  # here: the job-side launcher never needs it (~50 ms of its start)
        return await asyncio.to_thread(self.request, method, path, **kw)
