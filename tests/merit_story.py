"""What a run of merit-based access against the running factory needs: the browser story
(``tests/browser/test_access_story.py``) and ``benchmarks/award.py`` open calls, submit,
review and award through the hub's access service as the demo's people, and then take back
what they made: the service has no withdraw (an award stands). :func:`remove_calls`
removes exactly their rows and what the awards made:

1. the awarded projects' jobs are cancelled (Slurm refuses to delete an account in use);
2. the rows, by id: the calls, their proposals, the proposals' reviewer seats, reviews and
   awards (one transaction);
3. the projects' user associations and accounts (``sacctmgr delete``; the one apply path
   never deletes an account);
4. the one apply path, :func:`workbench.enact.enact`, so that the projects' Unix groups and
   the datasets' access follow, as after any change of the allocations.

Every reader of the allocations (spawn form, dashboards, ``allocations show``) sees the
factory as before: the awards' version changes, so their cached copies are read again.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select

from workbench.allocations.awards import table as awards
from workbench.daemons import wait_until
from workbench.enact import enact
from workbench.merit import MeritStore
from workbench.merit.store import assignments, calls, proposals, reviews
from workbench.paths import database_made
from workbench.slurm import SlurmClient, queries


def calls_named(db: str, name: str) -> list[int]:
    """The ids of the calls called ``name`` (a run's own, unique name)."""
    if not database_made(db):
        return []
    return [c.id for c in MeritStore(db).calls() if c.name == name]


def remove_calls(slurm: SlurmClient, db: str, call_ids: Iterable[int]) -> list[str]:
    """Remove the calls ``call_ids`` with everything that came of them (see the module);
    the projects whose awards were removed."""
    call_ids = sorted(set(call_ids))
    if not call_ids:
        return []
    store = MeritStore(db)
    with store.transaction() as conn:
        pids = list(conn.execute(select(proposals.c.id)
                                 .where(proposals.c.call.in_(call_ids))).scalars())
        projects = sorted(conn.execute(select(awards.c.project)
                                       .where(awards.c.proposal.in_(pids))).scalars())
    _cancel_jobs(slurm, projects)
    with store.transaction() as conn:
        conn.execute(delete(awards).where(awards.c.proposal.in_(pids)))
        conn.execute(delete(reviews).where(reviews.c.proposal.in_(pids)))
        conn.execute(delete(assignments).where(assignments.c.proposal.in_(pids)))
        conn.execute(delete(proposals).where(proposals.c.id.in_(pids)))
        conn.execute(delete(calls).where(calls.c.id.in_(call_ids)))
    for project in projects:
        rows = slurm.run(queries.sacctmgr_list("association", "Account", "User",
                                               where=(f"account={project}",)))
        for user in sorted({r[1] for r in rows if r[1]}):
            slurm.run(queries.sacctmgr_modify("delete", "user", "where", f"name={user}",
                                              f"account={project}"))
        if rows:
            slurm.run(queries.sacctmgr_modify("delete", "account", "where",
                                              f"name={project}"))
    enact(slurm)
    return projects


def _cancel_jobs(slurm: SlurmClient, projects: list[str]) -> None:
    if not projects:
        return

    def left():
        return [j for j in slurm.run(queries.jobs())
                if j.account in projects and j.state.is_active]

    for job in left():
        slurm.run(queries.cancel(job.job_id))
    wait_until(lambda: not left(), f"the jobs of {', '.join(projects)} gone", 120)
