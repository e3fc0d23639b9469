"""The ``access`` hub service (extensions/access) without a hub: its API in-process, the hub's
login replaced as in ``test_hostile_input.py`` (``Authorization: token NAME``; maria is in
group managers, rita and ruth in reviewers). Every item of the issue's "bad input" list is
a 4xx naming the field, and changes nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from jinja2 import ChoiceLoader, DictLoader, Environment, FileSystemLoader
from traitlets.config import Config

from extensions.access.openapi import DOCUMENT
from extensions.access.service import ROUTES, templates
from spawners import calls
from tests.unit.test_fuzz_services import ThreadedService
from tests.unit.test_hostile_input import HOSTILE_BODIES, api_routes, as_user  # noqa: F401
from workbench import hubconfig, services
from workbench.allocations.awards import AwardStore
from workbench.demo.people import People
from workbench.hubconfig import Site
from workbench.merit import Caller
from workbench.paths import FactoryHome

from .test_merit import STARTUPS_SHARE, call_body, carla, make_office, maria, proposal_body

PREFIX = "/services/access/"


@pytest.fixture
def access(tmp_path, as_user):  # noqa: F811 (the fixture imported above)
    office = make_office(tmp_path, str(tmp_path / "merit.sqlite"), tmp_path / "audit.sqlite")
    office.reviewers = lambda: ["rita", "ruth"]

    def build():
        import asyncio
        return ROUTES, {"office": office, "write_lock": asyncio.Lock(), "openapi": DOCUMENT,
                        "service_prefix": PREFIX, "templates": templates()}, PREFIX
    service = ThreadedService(build)
    service.office = office
    yield service
    service.stop()


def http(service, method, path, user, body=None):
    reply = requests.request(method, f"{service.url}/{path}", json=body, timeout=30,
                             headers={"Authorization": f"token {user}"} if user else {})
    assert reply.headers["Content-Type"].startswith("application/json"), reply.text[:200]
    return reply.status_code, reply.json()


def state(office) -> tuple:
    """Everything a request could change."""
    s = office.store
    return (s.calls(), s.proposals(), s.assignments(), s.reviews(), s.organisations(),
            AwardStore(s.path).awards(), office.audit.records(limit=None))


def test_every_route_is_in_the_openapi_document_and_the_document_is_served(access):
    documented = {(path, method) for path, ops in DOCUMENT["paths"].items() for method in ops}
    assert api_routes(ROUTES) == documented
    assert http(access, "GET", "api/openapi.json", "carla") == (200, DOCUMENT)


def test_the_story_over_http(access):
    code, call = http(access, "POST", "api/calls", "maria", call_body(reviews_needed=1))
    assert (code, call["state"], call["left_gpu_hours"]) == (201, "open", 2000)
    assert http(access, "GET", "api/calls", "carla")[1]["calls"][0]["name"] == call["name"]
    code, draft = http(access, "POST", f"api/calls/{call['id']}/proposals", "carla",
                       {"project": "carla-ai"})
    assert (code, draft["state"]) == (201, "draft")
    code, _ = http(access, "PATCH", f"api/proposals/{draft['id']}", "carla", proposal_body())
    assert code == 200
    code, p = http(access, "POST", f"api/proposals/{draft['id']}/submit", "carla")
    assert (code, p["state"]) == (200, "in-review")
    first = access.office.store.assignments()[0].reviewer
    other = {"rita": "ruth", "ruth": "rita"}[first]
    code, answer = http(access, "POST", f"api/proposals/{p['id']}/conflict", first,
                        {"reason": "former colleague"})
    assert (code, answer["reassigned"]) == (200, True)
    assert [x["id"] for x in http(access, "GET", "api/proposals", other)[1]["to_review"]] == \
        [p["id"]]
    code, review = http(access, "POST", f"api/proposals/{p['id']}/reviews", other,
                        {"scores": {"excellence": 4, "impact": 4, "feasibility": 5},
                         "comment": "good"})
    assert (code, review["score"]) == (201, 4.25)
    code, ranking = http(access, "GET", f"api/calls/{call['id']}/proposals", "maria")
    assert ranking["proposals"][0]["score"] == 4.25
    assert ranking["share"]["left_gpu_hours"] == pytest.approx(STARTUPS_SHARE - 500)
    code, decided = http(access, "POST", f"api/proposals/{p['id']}/decision", "maria",
                         {"decision": "award", "gpu_hours": 50})
    assert (code, decided["state"], decided["awarded_hours"]) == (200, "awarded", 50)
    assert decided["slurm"] == ["added account carla-ai under startups"]
    code, seen = http(access, "GET", f"api/proposals/{p['id']}", "carla")
    assert seen["state"] == "awarded"
    assert [r["reviewer"] for r in seen["reviews"]] == ["reviewer 1"]
    assert other not in str(seen)  # applicants never see reviewers' names
    assert access.office.allocations().project("carla-ai").gpu_hours == 50
    code, summary = http(access, "GET", "api/summary", "maria")
    assert summary["calls"][0]["awarded_gpu_hours"] == 50
    assert summary["calls"][0]["proposals_by_state"]["awarded"] == 1
    assert summary["decision_hours"]["decided"] == 1
    startups = next(p for p in summary["programmes"] if p["programme"] == "startups")
    assert startups["granted_gpu_hours"] == 550  # the file's 500 and the award's 50
    assert http(access, "GET", "api/summary", "carla")[0] == 403


@pytest.mark.parametrize("user, shown, hidden", [
    ("carla", ["calls", "proposal-form", "save-draft", "submit-proposal", "mine"],
     ["to-review", "call-form", "ranking"]),
    ("rita", ["calls", "to-review", "r-organisation"], ["call-form", "ranking"]),
    ("maria", ["calls", "call-form", "open-call", "ranking", "ranking-call"], ["to-review"]),
])
def test_the_page_shows_each_role_its_part(access, monkeypatch, user, shown, hidden):
    import extensions.hubservice
    from tests.unit.test_hostile_input import GROUPS

    def current_user(handler):
        return {"name": user, "groups": GROUPS.get(user, [])}
    monkeypatch.setattr(extensions.hubservice.PageHandler, "get_current_user", current_user)
    reply = requests.get(access.url + "/", timeout=30)
    assert reply.status_code == 200 and reply.headers["Content-Type"].startswith("text/html")
    for ident in shown:
        assert f'id="{ident}"' in reply.text, ident
    for ident in hidden:
        assert f'id="{ident}"' not in reply.text, ident
    assert f'data-user="{user}"' in reply.text


def test_every_option_of_the_service_has_help():
    from extensions.access.service import AccessService
    own = AccessService.class_own_traits(config=True)
    assert set(own) == {"db", "audit_db", "slurm_conf"}
    assert all((t.help or "").strip() for t in own.values())


def scenario(office, stage: str) -> int:
    """A proposal of carla's at ``stage`` (draft, in-review, reviewed), its id."""
    call = office.open_call(maria, call_body(reviews_needed=1))
    p = office.new_proposal(carla, call.id, proposal_body())
    if stage == "draft":
        return p.id
    office.submit(carla, p.id)
    if stage == "reviewed":
        seat = office.store.assignments()[0].reviewer
        office.review(Caller(seat, frozenset({"reviewers"})), p.id,
                      {"scores": {"excellence": 3, "impact": 3, "feasibility": 3}})
    return p.id


def seated(office) -> str:
    return office.store.assignments()[0].reviewer


def unseated(office) -> str:
    return {"rita": "ruth", "ruth": "rita"}[seated(office)]


SCORES = {"excellence": 3, "impact": 3, "feasibility": 3}
#: (the issue's words, stage, method, path, user, body, status, field)
BAD_INPUT = [
    ("a proposal from an ineligible organisation type", None, "POST",
     "api/calls/1/proposals", "carla", proposal_body(org_type="industry"), 400, "org_type"),
    ("a proposal over the call's maximum", None, "POST", "api/calls/1/proposals", "carla",
     proposal_body(gpu_hours=501), 400, "gpu_hours"),
    ("a team member who does not exist", None, "POST", "api/calls/1/proposals", "carla",
     proposal_body(team=["nobody"]), 400, "team"),
    ("a dataset id not in the catalogue", None, "POST", "api/calls/1/proposals", "carla",
     proposal_body(datasets=["nope"]), 400, "datasets"),
    ("a project name that is not a valid Slurm account name", None, "POST",
     "api/calls/1/proposals", "carla", proposal_body(project="Carla-AI"), 400, "project"),
    ("a project name already taken", "taken", "POST", "api/proposals/{id}/submit", "carla",
     None, 409, "project"),
    ("a proposal after the cut-off", "late", "POST", "api/proposals/{id}/submit", "carla",
     None, 400, "call"),
    ("an edit of a submitted proposal", "in-review", "PATCH", "api/proposals/{id}", "carla",
     {"abstract": "new"}, 409, "state"),
    ("a review by someone not assigned", "in-review", "POST", "api/proposals/{id}/reviews",
     unseated, {"scores": SCORES}, 403, "reviewer"),
    ("a score outside 1-5", "in-review", "POST", "api/proposals/{id}/reviews", seated,
     {"scores": {**SCORES, "impact": 6}}, 400, "scores"),
    ("a second review of the same proposal", "reviewed", "POST",
     "api/proposals/{id}/reviews", seated, {"scores": SCORES}, 409, "reviewer"),
    ("an award larger than requested", "reviewed", "POST", "api/proposals/{id}/decision",
     "maria", {"decision": "award", "gpu_hours": 101}, 400, "gpu_hours"),
    ("an award larger than the call has left", "call-spent", "POST",
     "api/proposals/{id}/decision", "maria", {"decision": "award", "gpu_hours": 100}, 400,
     "gpu_hours"),
    ("an award larger than the programme's share", "share-spent", "POST",
     "api/proposals/{id}/decision", "maria", {"decision": "award", "gpu_hours": 100}, 400,
     "gpu_hours"),
    ("a decision on a proposal still in review", "in-review", "POST",
     "api/proposals/{id}/decision", "maria", {"decision": "award", "gpu_hours": 50}, 409,
     "state"),
    ("a call offering more than the programme's share has left", None, "POST", "api/calls",
     "maria", call_body(gpu_hours=STARTUPS_SHARE), 400, "gpu_hours"),
    ("a call opened by someone not a manager", None, "POST", "api/calls", "carla",
     call_body(), 403, "user"),
]


@pytest.mark.parametrize("words, stage, method, path, user, body, status, field", BAD_INPUT,
                         ids=[b[0] for b in BAD_INPUT])
def test_bad_input_is_a_4xx_naming_the_field_and_changes_nothing(
        access, words, stage, method, path, user, body, status, field):
    office = access.office
    pid = _prepare(office, stage)
    who = user(office) if callable(user) else user
    before = state(office)
    code, answer = http(access, method, path.format(id=pid), who, body)
    assert (code, answer.get("field")) == (status, field), answer
    assert answer["message"]
    if stage == "share-spent":  # with what is left
        assert "the share of programme startups has left: 60 GPU-hours" in answer["message"]
    assert state(office) == before


def _prepare(office, stage):
    if stage is None:
        office.open_call(maria, call_body())
        return 0
    if stage == "taken":
        pid = scenario(office, "draft")
        office.edit_proposal(carla, pid, {"project": "startup-helios"})
        return pid
    if stage == "late":
        pid = scenario(office, "draft")
        office.clock.at = office.store.call(1).closes
        return pid
    if stage in ("call-spent", "share-spent"):
        pid = scenario(office, "reviewed")
        if stage == "call-spent":  # another proposal took 1950 of the call's 2000
            with office.store.transaction() as conn:
                from sqlalchemy import update

                from workbench.merit.store import calls
                conn.execute(update(calls).values(gpu_hours=50))
        else:  # the site's file granted the rest of the share by hand meanwhile
            path = office.allocations().path
            path.write_text(path.read_text().replace(
                "gpu_hours: 500", f"gpu_hours: {STARTUPS_SHARE - 60:g}"))
        return pid
    return scenario(office, stage)


def test_who_is_not_logged_in_gets_401_and_hostile_bodies_their_4xx(access):
    assert http(access, "GET", "api/calls", None)[0] == 401
    for body, status, words in HOSTILE_BODIES:
        reply = requests.post(f"{access.url}/api/calls", data=body, timeout=30,
                              headers={"Authorization": "token maria"})
        assert reply.status_code == status and words in reply.json()["message"]
    assert access.office.store.calls() == []


def test_the_service_is_on_the_one_recipe(tmp_path):
    site = Site(home=FactoryHome(tmp_path))
    access = next(s for s in services.registry(site) if s.name == "access")
    assert (access.prefix, access.port, access.access) == ("/services/access/", 8096,
                                                            (services.EVERY_USER,))
    ports = [s.port for s in services.registry(site) if s.port]
    assert len(ports) == len(set(ports))
    assert access.scopes == ("read:groups!group=reviewers",)


def test_the_hubs_home_page_lists_the_open_calls_with_a_way_to_apply(tmp_path):
    """c.JupyterHub.template_vars' open_calls reads the merit database the service writes;
    the home page (spawners/templates/hub/home.html) lists the calls open now."""
    site = Site(home=FactoryHome(tmp_path), slurm_conf="/site/slurm.conf", people=People(()))
    c = Config()
    hubconfig.update_spawner(c, site)
    open_calls = c.JupyterHub.template_vars["open_calls"]
    assert open_calls(None) == []  # nothing written yet: nothing shown, nothing created
    assert not (tmp_path / "hub" / "merit.sqlite").exists()
    office = make_office(tmp_path, site.merit_url, tmp_path / "audit.sqlite")
    today = dt.datetime.now(dt.UTC)
    office.clock = lambda: today
    for name, opens in (("Now", -1), ("Later", 5)):
        office.open_call(maria, call_body(
            name=name, opens=(today + dt.timedelta(days=opens)).isoformat(),
            closes=(today + dt.timedelta(days=9)).isoformat()))
    shown = open_calls(None)
    assert [x["name"] for x in shown] == ["Now"]
    env = Environment(loader=ChoiceLoader([
        DictLoader({"templates/home.html": "{% block main %}{% endblock %}"
                                           "{% block script %}{% endblock %}"}),
        FileSystemLoader(Path(calls.__file__).parent / "templates" / "hub")]))

    def home(listed):  # its words, whitespace as a browser shows it
        return " ".join(env.get_template("home.html").render(
            open_calls=listed, services=[], base_url="/hub/",
            user=SimpleNamespace(name="carla")).split())
    html = home(shown)
    assert 'id="wb-call-1"' in html and "<strong>Now</strong> (startups)" in html
    assert "2000 h100 GPU-hours on offer, at most 500 per proposal" in html
    assert 'href="/services/access/"' in html
    assert 'id="wb-calls"' not in home([])


def test_the_manager_dashboard_shows_calls_and_shares(tmp_path, monkeypatch):
    """The managers' dashboard's Access part: each call (offered, awarded, left, requested,
    proposals by state), each programme's share (granted with awards, held by calls, left),
    and how long decisions took; read from the merit database."""
    import time

    import pandas as pd

    from extensions.dashboards.manager import ManagerDashboard
    from tests.unit.test_dashboards_parts import RecordedSource
    from tests.unit.test_merit import reviewed
    from workbench.dashboards.cache import Cached

    office = make_office(tmp_path, str(tmp_path / "merit.sqlite"), tmp_path / "audit.sqlite")
    _, p = reviewed(office)
    office.decide(maria, p.id, {"decision": "award", "gpu_hours": 50})

    class Source(RecordedSource):
        def allocations(self):
            return office.allocations()

    source = Source(tmp_path / "cache")
    source.settings.merit_db = office.store.path
    monkeypatch.setattr(source.history, "table", lambda *a, **k: Cached(source.jobs, time.time()))
    monkeypatch.setattr(source.history, "covered_from",
                        lambda: pd.Timestamp("2026-01-01", tz="UTC"))
    dashboard = ManagerDashboard(source)
    row = dashboard.calls.value.iloc[0]
    assert (row["call"], row["GPU-hours offered"], row["GPU-hours awarded"],
            row["GPU-hours left"], row["awarded"]) == ("Start-ups 2026-Q4", 2000, 50, 1950, 1)
    assert "1 proposals decided" in dashboard.calls.message
    shares = dashboard.shares.value.set_index("programme")
    assert shares.loc["startups", "granted GPU-hours (file and awards)"] == 550
    assert shares.loc["startups", "held by open calls"] == 1950  # still open: what is left
    assert shares.loc["startups", "left GPU-hours"] == pytest.approx(STARTUPS_SHARE - 2500)
    budgets = dashboard.budgets.value  # the recorded budgets: the file's, marked so
    assert budgets["origin"].tolist() == ["file"]
