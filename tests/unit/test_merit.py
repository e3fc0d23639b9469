"""Merit-based access (workbench.merit): calls, proposals, reviews and awards, their rules
and refusals (each naming the field, changing nothing), the audit trail, and awards read by
the one allocations loader."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.pg import new_database, postgres_url  # noqa: F401
from workbench.allocations import AllocationError, load, machine_report
from workbench.allocations.awards import AwardStore
from workbench.allocations.model import Award, Project
from workbench.allocations.show import format_report
from workbench.audit import AuditLog
from workbench.merit import Caller, MeritError, MeritStore, Office, State
from workbench.merit.model import CallState

from .test_allocations import NODES

ALLOCATIONS = """\
period: {start: 2026-01-01, end: 2026-12-31}
programmes:
  startups:
    share: 30%
    projects:
      startup-helios: {members: [alice], gpu_hours: 500}
  research:
    share: 40%
  industry:
    share: 30%
"""
#: 30 % of (8 h100 + 4 a100) x 8760 h
STARTUPS_SHARE = 0.3 * 12 * 8760
USERS = {"alice", "bob", "carla", "rita", "ruth", "rolf", "maria"}
DATASETS = {"medical-imaging", "climate-era5"}
NOW = dt.datetime(2026, 12, 5, 12, tzinfo=dt.UTC)

maria = Caller("maria", frozenset({"managers"}))
carla = Caller("carla")
rita = Caller("rita", frozenset({"reviewers"}))
ruth = Caller("ruth", frozenset({"reviewers"}))
rolf = Caller("rolf", frozenset({"reviewers"}))


class Clock:
    def __init__(self, at=NOW):
        self.at = at

    def __call__(self):
        return self.at


def make_office(tmp_path, db: str, audit: str) -> Office:
    """An office over ``db`` (a SQLite file or a URL), the allocations above and the demo's
    nodes; ``enact`` records the allocations it would apply."""
    path = tmp_path / "allocations.yaml"
    path.write_text(ALLOCATIONS)
    enacted = []

    def enact():
        enacted.append(load(path, check_users=False, awards=AwardStore(db).awards()))
        return ["added account carla-ai under startups"]

    o = Office(store=MeritStore(db), audit=AuditLog(audit),
               allocations=lambda: load(path, check_users=False, nodes=NODES,
                                        awards=AwardStore(db).awards()),
               nodes=lambda: NODES, is_user=USERS.__contains__,
               datasets=lambda: DATASETS, reviewers=lambda: ["rita", "ruth", "rolf"],
               enact=enact, clock=Clock())
    o.enacted = enacted
    return o


@pytest.fixture
def office(tmp_path):
    return make_office(tmp_path, str(tmp_path / "merit.sqlite"), tmp_path / "audit.sqlite")


def call_body(**change):
    body = {"name": "Start-ups 2026-Q4", "programme": "startups", "gpu_type": "h100",
            "gpu_hours": 2000, "max_per_proposal": 500, "opens": "2026-12-01T00:00:00Z",
            "closes": "2026-12-20T17:00:00Z", "eligibility": ["startup", "sme"],
            "criteria": [{"name": "excellence", "weight": 2}, {"name": "impact", "weight": 1},
                         {"name": "feasibility", "weight": 1}],
            "reviews_needed": 1}
    return {**body, **change}


def proposal_body(**change):
    body = {"project": "carla-ai", "organisation": "Carla AI GmbH", "org_type": "startup",
            "abstract": "Fine-tuning small models for medical triage.", "gpu_hours": 100,
            "valid_from": "2026-12-10", "valid_until": "2027-06-30", "team": ["alice"],
            "datasets": ["medical-imaging"]}
    return {**body, **change}


def refused(call, field, status=400):
    with pytest.raises(MeritError) as e:
        call()
    assert (e.value.status, e.value.field) == (status, field), e.value.message
    return e.value.message


def submitted(office, **change):
    call = office.open_call(maria, call_body())
    p = office.new_proposal(carla, call.id, proposal_body(**change))
    return call, office.submit(carla, p.id)


def reviewed(office):
    call, p = submitted(office)
    reviewer = office.store.assignments()[0].reviewer
    office.review(Caller(reviewer, frozenset({"reviewers"})), p.id,
                  {"scores": {"excellence": 5, "impact": 4, "feasibility": 3}})
    return call, office.store.proposal(p.id)


# -- the whole story ----------------------------------------------------------------------

def test_the_story_from_call_to_award_in_the_allocations(office):
    story(office)


def test_the_story_in_postgresql(tmp_path, postgres_url):  # noqa: F811
    """A site keeps calls, proposals, reviews and awards in its PostgreSQL."""
    url = new_database(postgres_url)
    office = make_office(tmp_path, url, url)
    story(office)
    _, p = submitted(office, project="second")
    refused(lambda: office.edit_proposal(carla, p.id, {"abstract": "x"}), "state", 409)


def story(office):
    call = office.open_call(maria, call_body(reviews_needed=2))
    assert call.state(NOW) is CallState.OPEN
    draft = office.new_proposal(carla, call.id, {"project": "carla-ai"})
    assert draft.state is State.DRAFT
    office.edit_proposal(carla, draft.id, proposal_body())
    p = office.submit(carla, draft.id)
    assert p.state is State.IN_REVIEW
    seats = [a.reviewer for a in office.store.assignments()]
    assert sorted(seats) == ["rita", "rolf"]  # least loaded first, then by name
    assert office.conflict(rita, p.id, {"reason": "I advised Carla AI"}) == ["ruth"]
    refused(lambda: office.decide(maria, p.id, {"decision": "award", "gpu_hours": 50}),
            "state", 409)  # still in review
    for who in (rolf, ruth):
        office.review(who, p.id, {"scores": {"excellence": 5, "impact": 3, "feasibility": 4},
                                  "comment": "solid"})
    ranking = office.ranking(maria, call.id)
    assert ranking["proposals"][0]["score"] == pytest.approx((5 * 2 + 3 + 4) / 4)
    decided = office.decide(maria, p.id, {"decision": "award", "gpu_hours": 50})
    p = decided.proposal
    assert (p.state, p.awarded_hours) == (State.AWARDED, 50)
    assert decided.changes == ["added account carla-ai under startups"]
    allocs = office.allocations()
    project = allocs.project("carla-ai")
    assert (project.programme, project.members, project.gpu_hours, project.origin,
            project.datasets) == ("startups", ("carla", "alice"), 50, f"award {p.award}",
                                  ("medical-imaging",))
    assert office.enacted[-1].project("carla-ai")  # enact saw it
    assert "was decided already: awarded" in refused(lambda: office.decide(
        maria, p.id, {"decision": "award", "gpu_hours": 50}), "state", 409)
    actions = [r.action for r in office.audit.records()]
    assert actions == ["access.call.open", "access.proposal.draft", "access.proposal.edit",
                       "access.proposal.submit", "access.proposal.eligible",
                       "access.review.assign", "access.review.assign",
                       "access.review.conflict", "access.review.assign",
                       "access.review.score", "access.review.score",
                       "access.decision.award", "access.award.applied"]
    # the applicant sees her reviews without names once decided; a second call has less
    seen = office.visible(carla, p)
    assert [r["reviewer"] for r in seen["reviews"]] == ["reviewer 1", "reviewer 2"]
    assert office.call_json(office.store.call(call.id))["left_gpu_hours"] == 1950


def test_a_reviewer_is_never_given_her_own_organisation_or_team(office):
    office.set_organisation(rita, {"organisation": "carla ai  gmbh"})
    office.open_call(maria, call_body(reviews_needed=3))
    p = office.new_proposal(carla, 1, proposal_body(team=["ruth"]))
    office.submit(carla, p.id)
    assert [a.reviewer for a in office.store.assignments()] == ["rolf"]


def test_a_proposal_no_reviewer_could_take_goes_to_the_next_reviewer_who_joins(office):
    office.reviewers = lambda: []
    _, p = submitted(office)
    assert (p.state, office.store.assignments()) == (State.IN_REVIEW, [])
    office.reviewers = lambda: ["rita"]
    office.set_organisation(rita, {"organisation": "Uni Example"})
    assert [a.reviewer for a in office.store.assignments()] == ["rita"]
    assert office.audit.records()[-1].action == "access.review.assign"


def test_an_award_slurm_cannot_take_now_stands_and_says_so(office):
    from workbench.slurm import SlurmError
    _, p = reviewed(office)

    def down():
        raise SlurmError(["sacctmgr"], 1, "", "Connection refused")
    office.enact = down
    decided = office.decide(maria, p.id, {"decision": "award", "gpu_hours": 50})
    assert decided.proposal.state is State.AWARDED and decided.changes == []
    assert "recorded, but Slurm could not be changed now" in decided.error
    assert office.allocations().project("carla-ai")  # the next apply takes it
    assert office.audit.records()[-1].action == "access.award.pending"


def test_a_call_closes_by_itself_and_drafts_cannot_be_submitted_after(office):
    call = office.open_call(maria, call_body())
    p = office.new_proposal(carla, call.id, proposal_body())
    office.clock.at = dt.datetime(2026, 12, 20, 17, tzinfo=dt.UTC)
    # a fresh store on the same file: the state comes from the dates, not a process
    assert MeritStore(office.store.path).call(call.id).state(office.clock()) is \
        CallState.CLOSED
    assert "closed at 2026-12-20T17:00:00+00:00" in refused(
        lambda: office.submit(carla, p.id), "call")
    assert office.store.proposal(p.id).state is State.DRAFT


def test_the_applicant_never_sees_reviewers_names_and_others_see_nothing(office):
    call, p = reviewed(office)
    assert "reviews" not in office.visible(carla, p)  # not decided yet
    refused(lambda: office.visible(Caller("bob"), p), "proposal", 404)
    assert office.visible(maria, p)["reviews"][0]["reviewer"] in ("rita", "rolf", "ruth")


def test_reject_with_a_reason_and_not_eligible(office):
    call, p = reviewed(office)
    refused(lambda: office.decide(maria, p.id, {"decision": "reject"}), "reason")
    decided = office.decide(maria, p.id, {"decision": "reject", "reason": "out of scope"})
    assert (decided.proposal.state, decided.proposal.reason, decided.changes) == (
        State.REJECTED, "out of scope", [])
    q = office.submit(carla, office.new_proposal(carla, call.id,
                                                 proposal_body(project="other")).id)
    q = office.decide(maria, q.id, {"decision": "not-eligible",
                                    "reason": "not a start-up"}).proposal
    assert q.state is State.NOT_ELIGIBLE


# -- bad input: a 4xx naming the field, nothing changed ------------------------------------

@pytest.mark.parametrize("change, field", [
    ({"gpu_hours": 501}, "gpu_hours"),                     # over the call's maximum
    ({"org_type": "industry"}, "org_type"),                # ineligible organisation type
    ({"team": ["alice", "nobody"]}, "team"),               # a member who does not exist
    ({"datasets": ["no-such-set"]}, "datasets"),           # not in the catalogue
    ({"project": "Carla AI"}, "project"),                  # not a Slurm account name
    ({"project": "guard-x"}, "project"),                   # one the reservations keep
    ({"valid_from": "2027-01-01", "valid_until": "2026-12-31"}, "valid_until"),
    ({"gpu_type": "a100"}, "gpu_type"),
    ({"colour": "red"}, "colour"),
])
def test_a_bad_proposal_is_refused_naming_the_field(office, change, field):
    call = office.open_call(maria, call_body())
    refused(lambda: office.new_proposal(carla, call.id, proposal_body(**change)), field)
    assert office.store.proposals() == []


def test_a_project_name_already_taken_is_refused_at_submit(office):
    call = office.open_call(maria, call_body())
    p = office.new_proposal(carla, call.id, proposal_body(project="startup-helios"))
    refused(lambda: office.submit(carla, p.id), "project", 409)
    office.edit_proposal(carla, p.id, {"project": "carla-ai"})
    office.submit(carla, p.id)
    q = office.new_proposal(Caller("bob"), call.id, proposal_body(project="carla-ai"))
    refused(lambda: office.submit(Caller("bob"), q.id), "project", 409)
    assert office.store.proposal(q.id).state is State.DRAFT


def test_a_submitted_proposal_cannot_be_edited_or_submitted_again(office):
    _, p = submitted(office)
    refused(lambda: office.edit_proposal(carla, p.id, {"abstract": "new"}), "state", 409)
    refused(lambda: office.submit(carla, p.id), "state", 409)
    refused(lambda: office.edit_proposal(Caller("bob"), p.id, {"abstract": "x"}),
            "proposal", 404)
    assert office.store.proposal(p.id).abstract.startswith("Fine-tuning")


def test_reviews_by_the_unassigned_out_of_range_or_twice_are_refused(office):
    _, p = submitted(office)
    seated = office.store.assignments()[0].reviewer
    other = next(r for r in ("rita", "ruth", "rolf") if r != seated)
    me = Caller(seated, frozenset({"reviewers"}))
    good = {"excellence": 5, "impact": 4, "feasibility": 3}
    refused(lambda: office.review(Caller(other, frozenset({"reviewers"})), p.id,
                                  {"scores": good}), "reviewer", 403)
    refused(lambda: office.review(me, p.id, {"scores": {**good, "impact": 6}}), "scores")
    refused(lambda: office.review(me, p.id, {"scores": {**good, "impact": 0}}), "scores")
    refused(lambda: office.review(me, p.id, {"scores": {"excellence": 5}}), "scores")
    assert office.store.reviews() == []
    office.review(me, p.id, {"scores": good})
    refused(lambda: office.review(me, p.id, {"scores": good}), "reviewer", 409)
    assert len(office.store.reviews()) == 1


@pytest.mark.parametrize("hours, why", [
    (101, "more than requested"),
])
def test_an_award_over_the_request_is_refused(office, hours, why):
    _, p = reviewed(office)
    assert why in refused(lambda: office.decide(
        maria, p.id, {"decision": "award", "gpu_hours": hours}), "gpu_hours")
    assert office.store.proposal(p.id).state is State.REVIEWED
    assert AwardStore(office.store.path).awards() == []


def test_an_award_over_what_the_call_has_left_is_refused(office):
    call = office.open_call(maria, call_body(gpu_hours=150, max_per_proposal=100))
    ids = []
    for name in ("carla-a", "carla-b"):
        p = office.submit(carla, office.new_proposal(carla, call.id,
                                                     proposal_body(project=name)).id)
        for a in office.store.assignments():
            if a.proposal == p.id:
                office.review(Caller(a.reviewer, frozenset({"reviewers"})), p.id,
                              {"scores": {"excellence": 3, "impact": 3, "feasibility": 3}})
        ids.append(p.id)
    office.decide(maria, ids[0], {"decision": "award", "gpu_hours": 100})
    assert "call Start-ups 2026-Q4 has left: 50 GPU-hours" in refused(
        lambda: office.decide(maria, ids[1], {"decision": "award", "gpu_hours": 60}),
        "gpu_hours")


def test_a_call_or_award_over_the_programmes_share_is_refused_with_what_is_left(office):
    left = STARTUPS_SHARE - 500
    message = refused(lambda: office.open_call(
        maria, call_body(gpu_hours=left + 1, max_per_proposal=100)), "gpu_hours")
    assert f"the share of programme startups has left: {left:g} GPU-hours" in message
    office.open_call(maria, call_body(gpu_hours=left - 1000, max_per_proposal=100))
    # the first call holds its offer: a second may offer only what remains
    refused(lambda: office.open_call(maria, call_body(gpu_hours=1001)), "gpu_hours")
    assert len(office.store.calls()) == 1


def test_an_award_the_loader_refuses_is_refused_with_its_words(office):
    _, p = reviewed(office)
    path = office.allocations().path
    # the site's file took the name meanwhile
    path.write_text(ALLOCATIONS + "    projects:\n      carla-ai: {members: [bob]}\n")
    message = refused(lambda: office.decide(maria, p.id, {"decision": "award",
                                                          "gpu_hours": 100}), "gpu_hours")
    assert "award (new) (proposal 1): project of startups name 'carla-ai' is used twice" \
        in message
    assert office.store.proposal(p.id).state is State.REVIEWED
    # an unusable file: nothing is decided, and the caller is told why
    path.write_text("programmes: [")
    assert "allocations are unusable" in refused(lambda: office.decide(
        maria, p.id, {"decision": "award", "gpu_hours": 100}), None, 503)


@pytest.mark.parametrize("change, field", [
    ({"programme": "space"}, "programme"),
    ({"gpu_type": "tpu"}, "gpu_type"),
    ({"max_per_proposal": 3000}, "max_per_proposal"),
    ({"closes": "2026-11-30T00:00:00Z"}, "closes"),
    ({"closes": "tomorrow"}, "closes"),
    ({"eligibility": ["nonprofit"]}, "eligibility"),
    ({"criteria": [{"name": "x", "weight": 0}]}, "weight"),
    ({"reviews_needed": 0}, "reviews_needed"),
    ({"gpu_hours": -5}, "gpu_hours"),
])
def test_a_bad_call_is_refused_naming_the_field(office, change, field):
    refused(lambda: office.open_call(maria, call_body(**change)), field)
    assert office.store.calls() == []


def test_only_managers_open_calls_and_decide_and_only_reviewers_declare(office):
    refused(lambda: office.open_call(carla, call_body()), "user", 403)
    _, p = reviewed(office)
    refused(lambda: office.decide(rita, p.id, {"decision": "reject", "reason": "x"}),
            "user", 403)
    refused(lambda: office.set_organisation(carla, {"organisation": "x"}), "user", 403)


# -- awards in the allocations --------------------------------------------------------------

def test_awards_are_checked_by_the_loader_naming_the_award(tmp_path):
    path = tmp_path / "allocations.yaml"
    path.write_text(ALLOCATIONS)
    twice = Award(Project("startup-helios", "startups", ("carla",), 10), proposal=4, id=2)
    with pytest.raises(AllocationError, match=r"^award 2 \(proposal 4\): project of startups "
                       "name 'startup-helios' is used twice"):
        load(path, check_users=False, awards=[twice])
    big = Award(Project("carla-ai", "startups", ("carla",), STARTUPS_SHARE), proposal=5, id=3)
    with pytest.raises(AllocationError, match=r"^award 3 \(proposal 5\): project carla-ai: "
                       "the grants of programme startups add up"):
        load(path, check_users=False, nodes=NODES, awards=[big])
    nowhere = Award(Project("x-ai", "space", ("carla",), 1), proposal=6, id=4)
    with pytest.raises(AllocationError, match="programme 'space' is not in the allocations"):
        load(path, check_users=False, awards=[nowhere])


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A factory home whose allocations file in force is :data:`ALLOCATIONS`."""
    home = tmp_path / "home"
    (home / "etc").mkdir(parents=True)
    (home / "etc" / "allocations.yaml").write_text(ALLOCATIONS)
    monkeypatch.setenv("AIFACTORY_HOME", str(home))
    return home


def test_the_file_in_force_includes_the_awards_and_show_marks_their_origin(
        tmp_path, home, no_factory_awards):
    from workbench.allocations.loader import cached
    assert [p.name for p in cached().projects] == ["startup-helios"]
    store = AwardStore(no_factory_awards)
    with store.engine.begin() as conn:
        AwardStore.insert(conn, Award(
            Project("carla-ai", "startups", ("carla",), 50, dt.date(2026, 12, 1),
                    datasets=("medical-imaging",)), 1, "maria", "2026-12-05T12:00:00+00:00"))
    allocs = cached()  # read again at once: the awards changed
    assert [(p.name, p.origin) for p in allocs.projects] == [
        ("startup-helios", "file"), ("carla-ai", "award 1")]
    assert load(home / "etc" / "allocations.yaml", check_users=False).project("carla-ai")
    other = tmp_path / "other.yaml"
    other.write_text(ALLOCATIONS)  # any other file: its own projects only
    assert load(other, check_users=False).project("carla-ai") is None
    report = machine_report(allocs, NODES, [], [], dt.date(2026, 12, 6))
    assert report.as_dict()["projects"][1]["origin"] == "award 1"
    assert "carla-ai             award 1" in format_report(report)


def test_an_unreadable_award_store_makes_the_allocations_in_force_unusable(
        home, no_factory_awards):
    from pathlib import Path

    from workbench.allocations.loader import cached
    Path(no_factory_awards).mkdir()  # not a database
    with pytest.raises(AllocationError, match="the awards of merit review cannot be read"):
        cached()


def test_membership_gives_an_awarded_project_its_datasets(tmp_path):
    from workbench.catalogue.model import AccessPolicy, Dataset, Publisher
    from workbench.catalogue.policy import Membership
    path = tmp_path / "allocations.yaml"
    path.write_text(ALLOCATIONS)
    allocs = load(path, check_users=False, awards=[Award(
        Project("carla-ai", "startups", ("carla", "alice"), 50,
                datasets=("medical-imaging",)), 1, id=1)])
    members = Membership.from_allocations(allocs)

    def dataset(ident):
        return Dataset(ident, "t", "d", "health", Publisher("p"), "CC-BY-4.0", "restricted",
                       (), AccessPolicy(projects=("research-medai",)))
    assert members.readers(dataset("medical-imaging")) == {"carla", "alice"}
    assert members.readers(dataset("climate-era5")) == set()


def test_reading_the_allocations_imports_no_sqlalchemy_while_nothing_was_awarded(
        tmp_path, monkeypatch):
    """Kernels and the dashboards' kernels read the allocations (budgets); SQLAlchemy costs
    0.4 s of their start and is imported only where an award store is there to read."""
    from tests.unit.test_session_start import fresh
    monkeypatch.setenv("AIFACTORY_HOME", str(tmp_path))  # a home with nothing awarded
    monkeypatch.delenv("WORKBENCH_DATABASE_URL", raising=False)
    got = fresh("""
        import json, sys
        from workbench.allocations.loader import cached
        from workbench.paths import data_file
        cached(data_file("cluster", "allocations.yaml"))
        print(json.dumps({"sqlalchemy": "sqlalchemy" in sys.modules}))
        """)
    assert got == {"sqlalchemy": False}


def test_the_factorys_awards_come_with_any_file_it_applies(tmp_path, home, no_factory_awards,
                                                           monkeypatch):
    """``workbench allocations apply FILE``: a site's new file keeps the awarded projects
    (their Slurm accounts and their datasets' groups would go otherwise)."""
    from workbench.allocations import loader
    from workbench.enact import load_in_force
    monkeypatch.setattr(loader, "_is_user", USERS.__contains__)  # this machine's users
    with AwardStore(no_factory_awards).engine.begin() as conn:
        AwardStore.insert(conn, Award(Project("carla-ai", "startups", ("carla",), 50), 1,
                                      "maria", "2026-12-05T12:00:00+00:00"))
    other = tmp_path / "new.yaml"
    other.write_text(ALLOCATIONS.replace("gpu_hours: 500", "gpu_hours: 600"))

    class Slurm:
        def run(self, query):
            return NODES
    allocs = load_in_force(Slurm(), other)
    assert allocs.project("startup-helios").gpu_hours == 600
    assert allocs.project("carla-ai").origin == "award 1"
    other.write_text(ALLOCATIONS.replace("  startups:", "  start-ups:"))
    with pytest.raises(AllocationError, match="programme 'startups' is not in the allocations"):
        load_in_force(Slurm(), other)
