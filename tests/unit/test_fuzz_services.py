"""The catalogue, help and access services fuzzed from their OpenAPI documents with schemathesis:
requests that fit the document and requests that do not (wrong types, missing and extra
fields, hostile strings), as alice, bob and sam (and, for access, maria of managers and rita
of reviewers). Every answer: no 5xx, no traceback, JSON
with a ``message`` when refused, within 2 s; and a refused request (4xx) changed nothing
(the help store's requests, the audit records, the licence acceptances, the calls,
proposals, reviews and awards).

The services run in-process on a real Tornado server in a thread of their own (schemathesis
calls them over HTTP, synchronously), the hub's login replaced as in
``test_hostile_input.py``. How many cases: ``tests/fuzzing.py`` (WORKBENCH_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from types import SimpleNamespace

import pytest
import requests
import schemathesis
from hypothesis import event, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from tornado.testing import bind_unused_port

from extensions.access.openapi import DOCUMENT as ACCESS_DOCUMENT
from extensions.access.service import ROUTES as ACCESS_ROUTES
from extensions.catalogue.openapi import DOCUMENT as CATALOGUE_DOCUMENT
from extensions.catalogue.service import ROUTES as CATALOGUE_ROUTES
from extensions.help.openapi import DOCUMENT as HELP_DOCUMENT
from extensions.help.service import ROUTES as HELP_ROUTES
from extensions.hubservice import listen, make_app
from tests.fuzzing import fuzz_settings
from tests.unit.test_hostile_input import MEMBERS, FakeHub, as_user  # noqa: F401 (a fixture)
from workbench.audit import AuditLog
from workbench.catalogue import demodata
from workbench.catalogue import model as catalogue_model
from workbench.catalogue.policy import LicenceStore
from workbench.catalogue.store import CatalogueStore
from workbench.help import HelpDesk, HelpStore
from workbench.paths import data_file

CATALOGUE_FILE = data_file("cluster", "catalogue.yaml")
#: the longest any answer may take, in seconds
ANSWER_WITHIN_S = 2.0
#: words that only a traceback or a framework's own error page holds
TRACEBACK_WORDS = ("Traceback (most recent call last)", 'File "/', "<html")


SCHEMATHESIS_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
                       response_schema_conformance, negative_data_rejection]
#: who calls: a member of a project, a member of another, support, or whoever the generated
#: Authorization header names (often nobody)
USERS = st.sampled_from(["alice", "bob", "sam", None])


class ThreadedService:
    """A service's app on a free port, served from an event loop in its own thread."""

    def __init__(self, build):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start():
            routes, settings, prefix = build()
            sock, port = bind_unused_port()
            return listen(make_app(routes, settings, prefix=prefix), port, sockets=[sock]), \
                f"http://127.0.0.1:{port}{prefix.rstrip('/')}"
        self.server, self.url = asyncio.run_coroutine_threadsafe(start(), self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def help_service(tmp_path, as_user):  # noqa: F811 (the fixture imported above)
    store, audit = HelpStore(tmp_path / "help.sqlite"), AuditLog(tmp_path / "audit.sqlite")

    def build():
        async def catch_up(full=True):
            return []
        desk = HelpDesk(store, FakeHub(), audit, slurm=None, hub_prefix="/")
        return HELP_ROUTES, {"desk": desk, "catch_up": catch_up, "openapi": HELP_DOCUMENT,
                             "service_prefix": "/services/help/"}, "/services/help/"
    service = ThreadedService(build)
    yield SimpleNamespace(url=service.url, state=lambda: (store._select(), audit.records(
        limit=None)), unchanged=lambda before, after, status: before == after)
    service.stop()


@pytest.fixture
def catalogue_service(tmp_path, as_user):  # noqa: F811
    root = tmp_path / "datasets"
    demodata.generate(root, only=["crop-yields"])
    audit = AuditLog(tmp_path / "audit.sqlite")
    licences = LicenceStore(audit)

    def build():
        store = CatalogueStore(CATALOGUE_FILE, root, audit, None,
                               licences, membership=lambda: MEMBERS, enforce=False)
        return CATALOGUE_ROUTES, {"store": store, "openapi": CATALOGUE_DOCUMENT,
                                  "service_prefix": "/services/catalogue/"}, \
            "/services/catalogue/"
    service = ThreadedService(build)
    yield SimpleNamespace(url=service.url, state=lambda: (licences.all(), audit.records(
        limit=None)), unchanged=catalogue_unchanged)
    service.stop()


@pytest.fixture
def access_service(tmp_path, as_user):  # noqa: F811
    from tests.unit.test_access_service import state
    from tests.unit.test_merit import call_body, carla, make_office, maria, proposal_body

    office = make_office(tmp_path, str(tmp_path / "merit.sqlite"), tmp_path / "audit.sqlite")
    office.reviewers = lambda: ["rita"]
    # something for the ids to name: an open call, a draft and a proposal in review
    call = office.open_call(maria, call_body(reviews_needed=1))
    office.new_proposal(carla, call.id, proposal_body(project="carla-draft"))
    office.submit(carla, office.new_proposal(carla, call.id, proposal_body()).id)

    def build():
        return ACCESS_ROUTES, {"office": office, "write_lock": asyncio.Lock(),
                               "openapi": ACCESS_DOCUMENT,
                               "service_prefix": "/services/access/"}, "/services/access/"
    service = ThreadedService(build)
    yield SimpleNamespace(url=service.url, state=lambda: state(office),
                          unchanged=lambda before, after, status: before == after)
    service.stop()


def catalogue_unchanged(before, after, status: int) -> bool:
    """The licence acceptances are the same, and the audit store the same but for the one
    ``dataset.refused`` record a 403 of the access rules writes (the README's contract)."""
    (accepted, records), (accepted_now, records_now) = before, after
    added = [r.action for r in records_now[len(records):]]
    return accepted == accepted_now and records_now[:len(records)] == records and \
        added == (["dataset.refused"] if status == 403 and added else [])


def cases(document: dict):
    """Every operation of ``document``: requests that fit it and requests that do not."""
    schema = schemathesis.openapi.from_dict(document)
    return st.one_of(schema.as_strategy(GenerationMode.POSITIVE),
                     schema.as_strategy(GenerationMode.NEGATIVE))


def check_answer(service, case, user: str | None, known_id=None) -> None:
    """One request: its answer, its time, and (refused) that nothing changed. ``known_id``:
    an id that exists, in place of the generated one (which rarely does)."""
    if known_id is not None and "id" in (case.path_parameters or {}):
        case.path_parameters = {**case.path_parameters, "id": known_id}
    if user:  # else the header as generated (none, empty, hostile)
        case.headers = {**(case.headers or {}), "Authorization": f"token {user}"}
    before = service.state()
    started = time.monotonic()
    response = case.call(base_url=service.url, timeout=10)
    took = time.monotonic() - started
    event(f"{case.method} {case.path}: {response.status_code}")
    what = f"{case.method} {case.formatted_path} as {user}: {response.status_code}"
    text = response.text
    assert response.status_code < 500, f"{what}\n{case.as_curl_command()}\n{text[:500]}"
    assert not any(w in text for w in TRACEBACK_WORDS), f"{what}: {text[:500]}"
    assert took < ANSWER_WITHIN_S, f"{what}: answered in {took:.2f} s"
    try:
        answer = json.loads(text)
    except ValueError:
        pytest.fail(f"{what}: not JSON: {text[:200]!r}")
    # schemathesis' own: the status, media type and body the document declares; a request
    # that does not fit the document is refused
    case.validate_response(response, checks=SCHEMATHESIS_CHECKS)
    if response.status_code >= 400:
        assert isinstance(answer.get("message"), str) and answer["message"], (what, answer)
        assert service.unchanged(before, service.state(), response.status_code), \
            f"{what}: the refused request changed something"


@given(case=cases(HELP_DOCUMENT), user=USERS,
       known_id=st.none() | st.integers(1, 4))
@fuzz_settings()
def test_fuzz_the_help_service_from_its_openapi_document(help_service, case, user, known_id):
    check_answer(help_service, case, user, known_id)


@given(case=cases(CATALOGUE_DOCUMENT), user=USERS,
       known_id=st.none() | st.sampled_from(catalogue_model.load(CATALOGUE_FILE).ids))
@fuzz_settings()
def test_fuzz_the_catalogue_service_from_its_openapi_document(catalogue_service, case, user,
                                                              known_id):
    check_answer(catalogue_service, case, user, known_id)


@given(case=cases(ACCESS_DOCUMENT), user=st.sampled_from(["carla", "maria", "rita", "bob", None]),
       known_id=st.none() | st.integers(1, 2))
@fuzz_settings()
def test_fuzz_the_access_service_from_its_openapi_document(access_service, case, user,
                                                           known_id):
    check_answer(access_service, case, user, known_id)


# -- what the fuzzing found, each as its minimal example ------------------------------------


def test_a_path_the_service_does_not_serve_is_a_json_404(help_service, catalogue_service):
    """Found: ``GET /api/requests/-1`` (an id the route's pattern does not match) was
    Tornado's HTML 404 page."""
    for url in (help_service.url + "/api/requests/-1", catalogue_service.url + "/api/nope",
                help_service.url + "/nope/deeper"):
        reply = requests.get(url, headers={"Authorization": "token alice"}, timeout=10)
        assert reply.status_code == 404, url
        assert reply.headers["Content-Type"].startswith("application/json")
        assert "openapi.json" in reply.json()["message"]


def test_a_project_of_101_characters_is_refused_by_the_listing_as_elsewhere(
        catalogue_service):
    """Found: ``GET /api/datasets?project=<101 zeros>`` was answered 200 (the listing allowed
    200 characters, ``datasets/{id}`` and ``open`` 100, the document said 100)."""
    for path in ("/api/datasets", "/api/datasets/crop-yields"):
        reply = requests.get(catalogue_service.url + path, params={"project": "0" * 101},
                             headers={"Authorization": "token bob"}, timeout=10)
        assert reply.status_code == 400 and reply.json()["message"].startswith("project")
    reply = requests.post(catalogue_service.url + "/api/datasets/crop-yields/open",
                          json={"project": "research-medai\x1b"},
                          headers={"Authorization": "token bob"}, timeout=10)
    assert reply.status_code == 400 and reply.json()["message"].startswith("project")
