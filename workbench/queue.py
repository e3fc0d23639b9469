"""What a waiting job's owner wants to know: why it waits, where it stands, when it may start,
and how it could start sooner. Pure functions over Slurm snapshots, shared by the spawn page
and (later) the support dashboard."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from .slurm.models import Job, Node

#: Slurm's pending reasons in plain words
PENDING_REASONS = {
    "None": "just submitted; the scheduler has not looked at it yet",
    "Priority": "other jobs are ahead of yours in the queue",
    "Resources": "waiting for the GPUs, CPUs or memory you asked for to free up",
    "QOSMaxGRESPerUser": "your quality of service allows no more GPUs at once",
    "AssocGrpGRESMinutes": "your project has used up its GPU-hour grant",
    "AssocGrpGRES": "your project has as many GPUs as it may use at once",
    "QOSGrpGRES": "your programme's share of these GPUs is in use (the rest is reserved)",
    "ReqNodeNotAvail": "the nodes you need are unavailable (down, drained or reserved)",
    "PartitionTimeLimit": "the walltime is over the partition's limit",
    "Dependency": "waiting for another job to finish",
    "BeginTime": "waiting for its start time",
    "JobHeldUser": "held by you",
    "JobHeldAdmin": "held by an operator",
}


#: what a job's end means for its owner (sacct states)
END_WORDS = {
    "TIMEOUT": "it reached its walltime",
    "CANCELLED": "it was cancelled (by you, an operator or the idle culler)",
    "NODE_FAIL": "its node failed",
    "OUT_OF_MEMORY": "it ran out of memory; ask for more next time",
    "FAILED": "the server exited with an error",
    "PREEMPTED": "it was preempted by a higher-priority job",
    "BOOT_FAIL": "its node failed to boot",
    "COMPLETED": "the server exited",
}


def describe_pending(reason: str) -> str:
    if reason in PENDING_REASONS:
        return PENDING_REASONS[reason]
    if reason.startswith(("QOS", "Assoc")):
        return f"a project or QOS limit holds it ({reason})"
    return reason or "waiting"


def queue_position(job: Job, jobs: Iterable[Job]) -> tuple[int, int]:
    """(position, pending) of ``job`` among the pending jobs of its partition (1 = next)."""
    pending = [j for j in jobs if j.partition == job.partition and j.state.is_pending]
    pending.sort(key=lambda j: (-j.priority, j.submit_time or datetime.max.replace(tzinfo=UTC),
                                j.job_id))
    ids = [j.job_id for j in pending]
    return (ids.index(job.job_id) + 1 if job.job_id in ids else 0), len(ids)


def estimated_start(job: Job, now: datetime | None = None) -> datetime | None:
    """Slurm's estimate (backfill's ``start_time`` of a pending job), if it has one."""
    now = now or datetime.now(UTC)
    if not job.state.is_pending or job.start_time is None or job.start_time.year < 2000:
        return None
    return job.start_time if job.start_time > now else None


@dataclass(frozen=True)
class Advice:
    text: str


def start_sooner(job: Job, nodes: Iterable[Node], cpus: int = 1) -> list[Advice]:
    """Ways to start now: another partition or GPU type with idle GPUs, or fewer GPUs."""
    nodes = [n for n in nodes if n.ready]
    out = []
    if job.gpus:
        best_here = max((n.gpus_idle for n in nodes if job.partition in n.partitions
                         and n.idle_cpus >= cpus), default=0)
        if 0 < best_here < job.gpus:
            out.append(Advice(f"{best_here} GPU{'s' if best_here > 1 else ''} instead of "
                              f"{job.gpus} would start now in {job.partition}"))
        others: dict[tuple[str, str], int] = {}
        for n in nodes:
            if n.gpus_idle >= job.gpus and n.idle_cpus >= cpus:
                for p in n.partitions:
                    if p != job.partition:
                        key = (p, n.gpu_type)
                        others[key] = max(others.get(key, 0), n.gpus_idle)
        for (p, gpu_type), idle in sorted(others.items()):
            out.append(Advice(f"partition {p} has {idle} idle {gpu_type} GPUs on a node now"))
    return out


def waiting_message(job: Job, jobs: Iterable[Job], nodes: Iterable[Node] | None = None,
                    now: datetime | None = None) -> str:
    """One line for the spawn page: reason, position, estimate, advice."""
    now = now or datetime.now(UTC)
    parts = [f"Job {job.job_id} is waiting in partition {job.partition}: "
             f"{describe_pending(job.reason)}."]
    pos, total = queue_position(job, jobs)
    if pos:
        parts.append(f"Position {pos} of {total} waiting there.")
    start = estimated_start(job, now)
    if start:
        minutes = max(1, round((start - now).total_seconds() / 60))
        parts.append(f"Slurm expects it to start around {start:%H:%M} UTC (in {minutes} min).")
    if nodes is not None:
        advice = start_sooner(job, nodes, max(job.cpus, 1))
        if advice:
            parts.append("To start sooner: " + "; ".join(a.text for a in advice) + ".")
    return " ".join(parts)
