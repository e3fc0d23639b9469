"""Whose a worker job is, and cancelling a session's workers when the session ends.

Every worker job carries its session's tag plus ``session=<job id>``
(:func:`workbench.tags.worker_tag`). Three things end them with their session:

- the session itself: ``PoolCluster.close()`` and a kernel interrupt of ``torch_run`` cancel
  them; a killed kernel takes its scheduler with it, and Dask workers exit when that
  connection breaks (or after ``death_timeout`` if it never came up); a torch run is a batch
  job of its own and runs on until one of the two below;
- the spawner: ``SlurmGPUSpawner.stop()`` cancels the session's workers with its job
  (:func:`cancel_session_workers`);
- the hub's reconciler (``workbench reconcile``): a worker whose session job is not owned by
  a server or no longer active is cancelled (:func:`workbench.reconcile.find_orphans`).

No dask or torch import here: the spawner imports this module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ..slurm import Job, SlurmClient, SlurmError, queries
from ..tags import parse_job_tag, worker_tag

log = logging.getLogger(__name__)


def session_workers(jobs: Iterable[Job], session_tag: str, session_job_id: int) -> list[Job]:
    """The active worker jobs of the session (tag ``session_tag``, job ``session_job_id``)."""
    tag = worker_tag(session_tag, session_job_id)
    return [j for j in jobs if j.comment == tag and j.state.is_active]


def owning_session(job: Job) -> int | None:
    """The session job id a worker job belongs to; None for a session or a foreign job."""
    session = (parse_job_tag(job.comment) or {}).get("session")
    return int(session) if session else None


async def cancel_session_workers(slurm: SlurmClient, jobs: Iterable[Job], session_tag: str,
                                 session_job_id: int, as_user: str | None) -> list[int]:
    """``scancel`` (as ``as_user``) every active worker job of the session; returns their ids.
    A job already gone is not an error."""
    done = []
    for job in session_workers(jobs, session_tag, session_job_id):
        try:
            await slurm.arun(queries.cancel(job.job_id, as_user=as_user))
        except SlurmError as e:
            log.warning("worker job %s of session job %s not cancelled: %s", job.job_id,
                        session_job_id, e.stderr)
            continue
        done.append(job.job_id)
    return done
