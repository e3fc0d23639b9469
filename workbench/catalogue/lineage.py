"""Lineage: which job read which dataset, in the audit trail and on the job itself.

Every open is an audit record ``dataset.opened`` (subject: the dataset id) with the caller's
project, Slurm job id and node, and the files handed out. The job's datasets are also written
into its ``AdminComment`` (``workbench:datasets=grid-load,health-records``) so accounting tells
which data a job used: ``sacct -j N -o JobID,AdminComment`` shows it after the job ends. The
job's ``Comment`` holds the workbench tag the reconciler reads; it is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..audit import AuditLog, AuditRecord
from ..slurm import SlurmClient, queries
from ..slurm.models import Job
from ..slurm.snapshot import shared_snapshot

OPENED = "dataset.opened"
REFUSED = "dataset.refused"
LICENCE_ACCEPTED = "dataset.licence-accepted"
LICENCE_WITHDRAWN = "dataset.licence-withdrawn"
ADMIN_COMMENT_PREFIX = "workbench:datasets="


class JobCheckError(ValueError):
    """The job the caller named is not a running job of theirs."""


@dataclass(frozen=True)
class JobContext:
    """Where an open happens: the caller's running Slurm job (None outside a job)."""

    job_id: int | None
    node: str | None
    account: str | None


#: how old (s) the shared job snapshot may be when it already shows the caller's job running
SNAPSHOT_AGE = 60.0
#: the least time (s) between two ``squeue`` for jobs the snapshot did not show: however
#: many opens name unknown (or bogus) job ids, they cost one call per this, together
RECHECK_INTERVAL = 1.0


def _mine(job: Job | None, user: str) -> bool:
    return job is not None and job.user == user and job.state.is_running


async def check_job(slurm: SlurmClient, user: str, job_id: int, node: str | None) -> JobContext:
    """The caller's job as Slurm knows it: it must be theirs and running (a user cannot
    attach data to someone else's job). Its account is the project the data is read for.
    One ``squeue`` serves every open for a minute; a job it does not show (yet) as the
    caller's running job is looked up in the next ``squeue`` started after the open asked,
    shared by every open waiting then and never sooner than :data:`RECHECK_INTERVAL` after
    the previous one, before the answer is no."""
    snap = shared_snapshot(slurm, SNAPSHOT_AGE, RECHECK_INTERVAL)
    job = (await snap.jobs()).get(job_id)
    if not _mine(job, user):
        job = (await snap.recheck()).get(job_id)
    if not _mine(job, user):
        raise JobCheckError(f"job {job_id} is not a running job of {user}'s")
    return JobContext(job_id, node or job.batch_host or job.nodes or None, job.account)


def record_open(audit: AuditLog, user: str, dataset_id: str, project: str | None,
                ctx: JobContext, files: list[str]) -> AuditRecord:
    return audit.record(user, OPENED, dataset_id, project=project, job_id=ctx.job_id,
                        node=ctx.node, files=files)


def job_datasets(audit: AuditLog, job_id: int, user: str | None = None) -> list[str]:
    """The datasets a job (of ``user``) opened, in the order first opened."""
    seen: dict[str, None] = {}
    for r in audit.records(OPENED, actor=user, limit=None):
        if r.details.get("job_id") == job_id:
            seen.setdefault(r.subject)
    return list(seen)


def admin_comment(datasets: list[str]) -> str:
    return ADMIN_COMMENT_PREFIX + ",".join(datasets)


async def attach_to_job(slurm: SlurmClient, audit: AuditLog, job_id: int, user: str) -> str:
    """Write the job's datasets (from the audit trail) into its AdminComment."""
    text = admin_comment(job_datasets(audit, job_id, user))
    await slurm.arun(queries.set_admin_comment(job_id, text))
    return text
