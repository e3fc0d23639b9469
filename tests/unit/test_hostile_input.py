"""Hostile input to the web APIs, as a user sends it: the catalogue and help services run
in-process behind a real Tornado server on a free port (the hub's OAuth replaced by a
``Authorization: token NAME`` that names the caller), and every answer is checked as a user
would: its status, its JSON message naming what was wrong, and that nothing changed.

Also the one body reader (:mod:`workbench.webinput`) that every JSON API uses, and the
whole numbers read from query parameters, paths and the spawn form."""

from __future__ import annotations

import asyncio
import json
import posixpath
import re
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote, unquote, urlsplit

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.testing import bind_unused_port
from tornado.web import HTTPError, RequestHandler

import extensions.hubservice
from extensions.catalogue.openapi import DOCUMENT as CATALOGUE_DOCUMENT
from extensions.catalogue.service import ROUTES as CATALOGUE_ROUTES
from extensions.help.openapi import DOCUMENT as HELP_DOCUMENT
from extensions.help.service import ROUTES as HELP_ROUTES
from extensions.hubservice import listen, make_app
from spawners.form import options_from_form
from workbench.audit import AuditLog
from workbench.catalogue import demodata
from workbench.catalogue.policy import LicenceStore, Membership, ProjectInfo
from workbench.catalogue.store import CatalogueStore
from workbench.help import HelpDesk, HelpStore
from workbench.paths import data_file
from workbench.resources import parse_runtime_min

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = Membership((ProjectInfo("research-medai", "research", ("bob",)),
                      ProjectInfo("startup-helios", "startups", ("alice",))))
GROUPS = {"sam": ["support"], "maria": ["managers"], "rita": ["reviewers"],
          "ruth": ["reviewers"]}

#: bodies no JSON API may answer with a 500: (body, status, words of the message)
HOSTILE_BODIES = [
    (b'{"minutes": ' + b"9" * 5000 + b"}", 400, "digits"),
    (b"[" * 20000 + b"]" * 20000, 400, "deep"),
    (b'{"accept": "' + b"x" * 100_000 + b'"}', 413, "KiB"),
    (b'{"minutes": 1e999}', 400, "out of range"),
    (b'{"minutes": NaN}', 400, "not JSON"),
    (b"\xff\xfe", 400, "UTF-8"),
]


class FakeHub:
    """The hub's sharing API as the help desk sees it: every server runs, shares recorded."""

    def __init__(self):
        self.granted: list[tuple] = []

    async def server(self, owner, server="", ready=True):
        return {"name": server, "ready": True}

    async def shares(self, owner, server=""):
        return []

    async def grant(self, owner, server, helper):
        self.granted.append((owner, server, helper))
        return {}

    async def revoke(self, owner, server, helper):
        return None


@pytest.fixture
def as_user(monkeypatch):
    """The hub's OAuth replaced: ``Authorization: token NAME`` is the hub user NAME."""
    def current_user(handler):
        auth = handler.request.headers.get("Authorization", "")
        name = auth.removeprefix("token ").strip()
        return {"name": name, "groups": GROUPS.get(name, []), "admin": False} if name else None
    monkeypatch.setattr(extensions.hubservice.APIHandler, "get_current_user", current_user)


async def serve(routes, settings, prefix):
    """The service's app on a free port, served as every service is (its body limits)."""
    sock, port = bind_unused_port()
    server = listen(make_app(routes, settings, prefix=prefix), port, sockets=[sock])
    return server, f"http://127.0.0.1:{port}{prefix}"


@pytest.fixture
async def help_service(tmp_path, as_user):
    store, audit = HelpStore(tmp_path / "help.sqlite"), AuditLog(tmp_path / "audit.sqlite")
    desk = HelpDesk(store, FakeHub(), audit, slurm=None, hub_prefix="/")

    async def catch_up(full=True):
        return []
    server, url = await serve(HELP_ROUTES, {"desk": desk, "catch_up": catch_up,
                                            "service_prefix": "/services/help/",
                                            "openapi": HELP_DOCUMENT},
                              "/services/help/")
    yield SimpleNamespace(url=url, store=store, audit=audit, desk=desk)
    server.stop()


@pytest.fixture
async def catalogue_service(tmp_path, as_user):
    root = tmp_path / "datasets"
    demodata.generate(root, only=["crop-yields"])
    audit = AuditLog(tmp_path / "audit.sqlite")
    store = CatalogueStore(data_file("cluster", "catalogue.yaml"), root, audit, None,
                           LicenceStore(audit), membership=lambda: MEMBERS, enforce=False)
    server, url = await serve(CATALOGUE_ROUTES, {"store": store, "openapi": CATALOGUE_DOCUMENT,
                                                 "service_prefix": "/services/catalogue/"},
                              "/services/catalogue/")
    yield SimpleNamespace(url=url, store=store, audit=audit)
    server.stop()


async def call(url, method="GET", body=None, user="alice", **kw):
    """(status, JSON answer) of one request."""
    reply = await AsyncHTTPClient().fetch(
        url, method=method, body=body, headers={"Authorization": f"token {user}"},
        raise_error=False, allow_nonstandard_methods=True, request_timeout=30, **kw)
    assert reply.code != 599, f"no HTTP answer: {reply.error}"
    assert reply.headers.get("Content-Type", "").startswith("application/json"), reply.body[:200]
    return reply.code, json.loads(reply.body)


async def ask(service, **fields):
    body = {"message": "it fails", "minutes": 60, **fields}
    return await call(service.url + "api/requests", "POST", json.dumps(body).encode())


# -- one body reader, with limits, for every JSON API ---------------------------------------


@pytest.mark.parametrize("body,status,words", HOSTILE_BODIES)
async def test_help_refuses_hostile_bodies_and_changes_nothing(help_service, body, status,
                                                               words):
    code, created = await ask(help_service)
    assert code == 201
    before = help_service.store.get(created["id"])
    code, answer = await call(help_service.url + "api/requests", "POST", body)
    assert (code, words in answer["message"]) == (status, True), answer
    code, answer = await call(help_service.url + f"api/requests/{created['id']}", "PATCH",
                              body)
    assert (code, words in answer["message"]) == (status, True), answer
    assert help_service.store.get(created["id"]) == before
    assert len(help_service.store.open_requests()) == 1
    assert [r.action for r in help_service.audit.records()] == ["help.requested"]


@pytest.mark.parametrize("body,status,words", HOSTILE_BODIES)
async def test_catalogue_refuses_hostile_bodies_and_changes_nothing(catalogue_service, body,
                                                                    status, words):
    for action in ("licence", "open"):
        code, answer = await call(
            catalogue_service.url + f"api/datasets/health-records/{action}", "POST", body,
            user="bob")
        assert (code, words in answer["message"]) == (status, True), (action, answer)
    assert catalogue_service.audit.records() == []
    code, answer = await call(catalogue_service.url + "api/datasets/health-records",
                              user="bob")
    assert answer["access"]["status"] == "licence-required"


async def test_a_5_mib_body_to_the_help_service_is_a_413_json_answer(help_service):
    """The server reads the body to its end and answers: closing the connection under the
    upload made the hub's proxy answer with its own 503 page."""
    body = json.dumps({"message": "x" * (5 * 1024 * 1024), "minutes": 60}).encode()
    code, answer = await call(help_service.url + "api/requests", "POST", body)
    assert code == 413 and "64 KiB" in answer["message"]
    assert help_service.store.open_requests() == []
    # the same connection pool still works: a small request after it is answered
    assert (await ask(help_service))[0] == 201


async def _raw_get(url: str) -> tuple[int, dict]:
    return await _raw_post(url, b"", method="GET")


async def _raw_post(url: str, body: bytes, auth: str = "", method: str = "POST"
                    ) -> tuple[int, dict]:
    """One HTTP/1.1 request on a keep-alive connection, as the hub's proxy sends it: the
    status and the answer's headers (lower-case names)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    head = (f"{method} {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            + (f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
               if body else "")
            + (f"Authorization: token {auth}\r\n" if auth else "") + "\r\n")
    writer.write(head.encode() + body)
    await writer.drain()
    lines = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
    writer.close()
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers


async def test_a_refusal_before_the_body_is_read_says_the_connection_closes(help_service):
    """Refused in prepare() (no login), before its body came in: Tornado closes the
    connection after answering, so the answer must say so, or the hub's proxy reuses that
    connection and answers the next request with its own 503 page (seen in the suite: a
    forged POST, then the next POST of the same browser got the proxy's HTML)."""
    body = json.dumps({"message": "csrf?", "minutes": 5}).encode()
    status, headers = await _raw_post(help_service.url + "api/requests", body)
    assert status == 401 and headers.get("connection") == "close", (status, headers)
    # a GET refused there too (Tornado has not finished reading it either)
    status, headers = await _raw_get(help_service.url + "api/requests")
    assert status == 401 and headers.get("connection") == "close", (status, headers)
    # refused after its body was read: the connection stays open for the next request
    status, headers = await _raw_post(help_service.url + "api/requests", b"{", auth="alice")
    assert status == 400 and headers.get("connection") != "close", (status, headers)


def test_the_reader_counts_depth_without_recursion_and_ignores_brackets_in_strings():
    from workbench.webinput import BadInput, depth, read_json
    assert depth('{"a": "[[[{{{", "b": [[1]]}') == 3
    assert depth("[" * 100_000) == 100_000
    assert read_json(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}') == {"a": "[" * 40}
    assert read_json(b"") is None and read_json(b'{"n": -123456789012345678}')
    with pytest.raises(BadInput) as e:
        read_json(b'"' + b'\\"' * 30_000)  # an unterminated string is not JSON, quickly
    assert e.value.status == 400


def test_hub_and_session_handlers_refuse_through_the_reader_with_http_errors():
    from workbench.webinput import json_body
    for body, status, words in HOSTILE_BODIES:
        with pytest.raises(HTTPError) as e:
            json_body(SimpleNamespace(request=SimpleNamespace(body=body)))
        assert e.value.status_code == status and words in e.value.log_message


def test_every_json_api_reads_its_body_through_the_one_reader():
    """No handler parses a request body itself (jupyterhub's and jupyter_server's
    get_json_body have no limits; json.loads of a body neither)."""
    found = []
    for folder in ("workbench", "spawners", "extensions"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"get_json_body\(\)|loads\(\w*\.?request\.body", line):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert found == [], "\n".join(found)


# -- whole numbers: ASCII digits only, within range -----------------------------------------


@pytest.mark.parametrize("param", ["limit", "offset"])
@pytest.mark.parametrize("value", ["²", "①", "٣", "9" * 5000, "-1", "1.5"])
async def test_unicode_digits_in_limit_and_offset_are_400_naming_the_parameter(
        catalogue_service, param, value):
    code, answer = await call(catalogue_service.url + f"api/datasets?{param}={quote(value)}")
    assert code == 400 and answer["message"].startswith(param), answer


async def test_help_request_ids_beyond_the_database_are_404(help_service):
    for rid in (2**63, 2**64 + 1, 2**31, "9" * 5000):
        for method, path, body in (("GET", "", None), ("DELETE", "", None),
                                   ("PATCH", "", b'{"minutes": 60}'),
                                   ("POST", "/join", b"")):
            code, answer = await call(help_service.url + f"api/requests/{rid}{path}", method,
                                      body, user="sam")
            assert code == 404 and "no help request" in answer["message"], (method, answer)


def test_the_spawn_form_and_runtimes_take_ascii_digits_only():
    assert options_from_form({"gpus": ["2"], "cpus": ["-3"]}) == {"gpus": 2, "cpus": -3}
    # passed on as text, so that the request check names the field (int() raised before)
    assert options_from_form({"gpus": ["²"], "cpus": ["--5"]}) == {"gpus": "²", "cpus": "--5"}
    assert parse_runtime_min("120") == 120
    for bad in ("①", "9" * 5000):
        with pytest.raises(ValueError, match="not a runtime"):
            parse_runtime_min(bad)


async def test_a_job_id_of_unicode_digits_is_400(catalogue_service):
    code, answer = await call(catalogue_service.url + "api/datasets/crop-yields/open", "POST",
                              json.dumps({"job_id": "²"}).encode(), user="bob")
    assert code == 400 and "job_id" in answer["message"]
    assert catalogue_service.audit.records() == []


# -- GET datasets/{id}: what the README promises --------------------------------------------


@pytest.mark.parametrize("query,words", [
    ("?nope=1", "unknown query parameter 'nope'"),
    ("?project=research-medai&project=startup-helios", "give project once"),
    ("?project=" + "p" * 300, "project"),
])
async def test_dataset_details_refuse_unknown_and_repeated_parameters(catalogue_service,
                                                                      query, words):
    code, answer = await call(catalogue_service.url + "api/datasets/crop-yields" + query,
                              user="bob")
    assert code == 400 and words in answer["message"], answer
    code, answer = await call(catalogue_service.url + "api/datasets/crop-yields"
                              "?project=research-medai", user="bob")
    assert code == 200 and answer["id"] == "crop-yields"


# -- the notebook of a help request, and Join's link -----------------------------------------

BAD_NOTEBOOKS = [
    "%2e%2e/%2e%2e/%2e%2e/%2e%2e/hub/logout", "..\\..\\hub\\logout", "a\x00b.ipynb",
    "/etc/passwd", "../x.ipynb", "work/../../x", "%252e%252e/x", "a//b.ipynb", "./a.ipynb",
    "dir/", "a\u202eb.ipynb", "n" * 300 + ".ipynb",
]


@pytest.mark.parametrize("notebook", BAD_NOTEBOOKS)
async def test_a_notebook_outside_the_owners_server_is_refused(help_service, notebook):
    code, answer = await ask(help_service, notebook=notebook)
    assert code == 400 and answer["message"].startswith("notebook"), answer
    assert help_service.store.open_requests() == []
    assert help_service.audit.records() == []


async def test_a_notebook_path_is_kept_and_its_link_quoted(help_service):
    code, answer = await ask(help_service, notebook="my work/50% done #2.ipynb")
    assert code == 201, answer
    assert answer["notebook"] == "my work/50% done #2.ipynb"
    assert answer["lab_url"] == "/user/alice/lab/tree/my%20work/50%25%20done%20%232.ipynb"
    code, answer = await call(help_service.url + f"api/requests/{answer['id']}/join", "POST",
                              b"", user="sam")
    assert code == 200 and answer["lab_url"].startswith("/user/alice/lab/tree/my%20work/")


def test_join_links_stay_in_the_owners_server_whatever_was_stored(tmp_path):
    """A request stored before the notebook was checked still links inside its server."""
    store = HelpStore(tmp_path / "help.sqlite")
    desk = HelpDesk(store, FakeHub(), AuditLog(tmp_path / "audit.sqlite"), hub_prefix="/")
    for i, notebook in enumerate(BAD_NOTEBOOKS):
        request = store.add(f"user{i}", "", "group:support", "help", notebook, 60, {})
        for key in ("url", "lab_url"):
            path = posixpath.normpath(unquote(urlsplit(desk.details(request)[key]).path))
            assert path.startswith(f"/user/user{i}"), (notebook, path)
        assert "/../" not in desk.details(request)["lab_url"]


# -- each service's OpenAPI document ----------------------------------------------------------


def api_routes(routes) -> set[tuple[str, str]]:
    """(path template, method) of every API route of a service, its groups named {id}."""
    out = set()
    for pattern, handler in routes:
        if not pattern.startswith("api/"):
            continue  # pages, not the JSON API
        path = "/" + re.sub(r"\([^)]*\)", "{id}", pattern).replace("\\", "")
        for method in ("get", "post", "put", "patch", "delete"):
            if getattr(handler, method) is not getattr(RequestHandler, method):
                out.add((path, method))  # the handler answers it (tornado's own is a 405)
    return out


@pytest.mark.parametrize("routes,document", [(CATALOGUE_ROUTES, CATALOGUE_DOCUMENT),
                                             (HELP_ROUTES, HELP_DOCUMENT)])
def test_every_route_of_a_service_is_in_its_openapi_document(routes, document):
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert api_routes(routes) == documented
    assert document["openapi"].startswith("3.")
    for ops in document["paths"].values():
        for op in ops.values():
            assert op["responses"]["default"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"}


async def test_the_services_publish_their_openapi_documents(help_service, catalogue_service):
    for service, document in ((help_service, HELP_DOCUMENT),
                              (catalogue_service, CATALOGUE_DOCUMENT)):
        code, answer = await call(service.url + "api/openapi.json")
        assert code == 200 and answer == json.loads(json.dumps(document))


@pytest.mark.parametrize("runtime", ["٠١:٠٠:٠٠", "01:٠٠:00", "１:00:00"])
def test_a_runtime_in_other_digits_is_refused_naming_runtime(runtime):
    """Found by the fuzzing: \\d took any script's digits (Arabic-Indic, full-width)."""
    from workbench.resources import parse_runtime_min
    with pytest.raises(ValueError, match="is not a runtime like 02:00:00"):
        parse_runtime_min(runtime)
    assert parse_runtime_min("01:00:00") == 60


def test_a_share_in_other_digits_is_not_a_percentage():
    from workbench.allocations.shares import _percent
    assert _percent("30%") == 30.0
    assert _percent("٣٠%") is None
