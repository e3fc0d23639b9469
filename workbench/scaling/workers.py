"""The live table of a cluster's worker jobs: job id, partition, node, state, GPUs, why it
waits (the spawn page's plain words and queue position, :mod:`workbench.waits`)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from ..slurm import Job
from ..waits import describe_pending, queue_positions


@dataclass(frozen=True)
class WorkerRow:
    pool: str
    name: str
    job_id: int | None
    partition: str
    node: str
    state: str
    gpus: int
    why: str
    connected: bool

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def worker_rows(planned: Iterable[str], job_ids: dict[str, int], connected: Iterable[str],
                jobs: Iterable[Job], partitions: dict[str, str],
                newer: Collection[int] = ()) -> list[WorkerRow]:
    """One row per planned worker name (``pool-i``), from one ``squeue`` (``jobs``).

    ``job_ids``: worker name -> job id of the submitted ones; ``connected``: names the
    scheduler sees; ``partitions``: pool -> partition, for workers not submitted yet;
    ``newer``: job ids submitted after ``jobs`` was read (a shared snapshot): missing from
    it, they are SUBMITTED, where any other missing job has ENDED."""
    jobs = list(jobs)
    by_id = {j.job_id: j for j in jobs}
    positions = queue_positions(jobs)
    connected = set(connected)
    rows = []
    for name in sorted(planned, key=lambda n: (str(n).rsplit("-", 1)[0],
                                               int(str(n).rsplit("-", 1)[1]))):
        pool = str(name).rsplit("-", 1)[0]
        job_id = job_ids.get(name)
        job = by_id.get(job_id) if job_id else None
        if job_id is None:
            state, why, node, gpus, part = "SUBMITTING", "sbatch running", "", 0, ""
        elif job is None and job_id in newer:
            state, why, node, gpus, part = "SUBMITTED", "not in the queue's last look yet", \
                "", 0, ""
        elif job is None:
            state, why, node, gpus, part = "ENDED", "left the queue", "", 0, ""
        else:
            state, node, gpus, part = job.state.value, job.nodes, job.gpus, job.partition
            why = ""
            if job.state.is_pending:
                pos, total = positions.get(job.job_id, (0, 0))
                why = describe_pending(job.reason) + (f" (position {pos} of {total})"
                                                      if pos else "")
            elif job.state.is_running and name not in connected:
                why = "starting the worker"
        rows.append(WorkerRow(pool, str(name), job_id, part or partitions.get(pool, ""), node,
                              state, gpus, why, name in connected))
    return rows
