"""Merit-based access on the real cluster: an award reaches Slurm by the one apply path, at
once, and Slurm enforces it exactly as a project of the allocations file (a job over its
hours waits with ``AssocGrpGRESMinutes``).

The steps run through :class:`workbench.merit.Office` over a throwaway merit database (the
running factory's calls and awards are left alone); the award is applied with the awards in
force beside it, so nothing of the factory's changes. The project is ``wbtest-award`` (alice),
removed afterwards with its Unix group.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from tests.integration.test_allocations import cancel_after, job  # noqa: F401 (a fixture)
from tests.slurm_jobs import sbatch
from workbench.allocations.awards import AwardStore
from workbench.allocations.loader import awards_in_force, default_path, load
from workbench.audit import AuditLog
from workbench.catalogue import model as catalogue
from workbench.enact import enact
from workbench.merit import Caller, MeritStore, Office, State
from workbench.slurm import queries
from workbench.slurm.parse import parse_tres

pytestmark = pytest.mark.slurm

PROJECT = "wbtest-award"
#: the goal of the issue: award to an account usable in Slurm, in seconds
AWARD_WITHIN_S = 10


@pytest.fixture
def office(slurm, tmp_path):
    db = str(tmp_path / "merit.sqlite")

    def awards():  # the factory's own awards and this test's
        return [*awards_in_force(default_path()), *AwardStore(db).awards()]

    o = Office(store=MeritStore(db), audit=AuditLog(tmp_path / "audit.sqlite"),
               allocations=lambda: load(check_users=False, nodes=slurm.run(queries.nodes()),
                                        awards=awards()),
               nodes=lambda: slurm.run(queries.nodes()), is_user=lambda u: u in ("alice",),
               datasets=lambda: catalogue.load().ids, reviewers=lambda: ["sam"],
               enact=lambda: enact(slurm, awards=awards()).slurm)
    yield o
    for args in (("delete", "user", "where", "name=alice", f"account={PROJECT}"),
                 ("delete", "account", "where", f"name={PROJECT}")):
        slurm.run(queries.sacctmgr_modify(*args))
    enact(slurm)  # the factory as it is: the test's Unix group goes with its project


def test_an_award_is_in_slurm_at_once_and_enforced_like_a_file_project(
        slurm, office, wait_for, cancel_after):  # noqa: F811 (the fixture imported above)
    now = dt.datetime.now(dt.UTC)
    maria, alice = Caller("maria", frozenset({"managers"})), Caller("alice")
    call = office.open_call(maria, {
        "name": "wbtest call", "programme": "startups", "gpu_type": "h100", "gpu_hours": 10,
        "max_per_proposal": 5, "opens": (now - dt.timedelta(hours=1)).isoformat(),
        "closes": (now + dt.timedelta(days=1)).isoformat(), "eligibility": ["startup"],
        "criteria": [{"name": "excellence", "weight": 1}], "reviews_needed": 1})
    p = office.new_proposal(alice, call.id, {
        "project": PROJECT, "organisation": "Test GmbH", "org_type": "startup",
        "abstract": "an award enforced by Slurm", "gpu_hours": 2})
    office.submit(alice, p.id)
    office.review(Caller("sam", frozenset({"reviewers"})), p.id,
                  {"scores": {"excellence": 4}})

    started = time.monotonic()
    decided = office.decide(maria, p.id, {"decision": "award", "gpu_hours": 1})
    took = time.monotonic() - started
    assert decided.proposal.state is State.AWARDED and not decided.error
    assert decided.changes == [f"added account {PROJECT} under startups",
                               f"set {PROJECT} grant to 1 GPU-hours",
                               f"added alice to {PROJECT}"]
    assert took < AWARD_WITHIN_S, f"the award took {took:.1f} s to reach Slurm"
    rows = slurm.run(queries.sacctmgr_list("association", "Account", "ParentName", "User",
                                           "GrpTRESMins", where=(f"account={PROJECT}",)))
    mine = {(r[2] or "-"): r for r in rows}
    assert mine["-"][1] == "startups"
    assert parse_tres(mine["-"][3]) == {"gres/gpu": 60}
    assert "alice" in mine
    assert enact(slurm, awards=[*awards_in_force(default_path()),
                                *AwardStore(office.store.path).awards()]).slurm == []

    # 2 GPUs for an hour: 120 GPU-minutes of the 60 granted; held by Slurm, never run
    held = sbatch(slurm, "alice", "-A", PROJECT, "-p", "gpu", "--gres=gpu:h100:2", "-t", "60")
    cancel_after.append(held)
    j = wait_for(lambda: (j := job(slurm, held)) and j.reason == "AssocGrpGRESMinutes" and j,
                 "the job held by the awarded grant")
    assert j.state.is_pending
