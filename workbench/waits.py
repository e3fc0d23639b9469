"""What a waiting job's owner wants to know: why it waits, where it stands, when it may start,
and how it could start sooner. Pure functions over Slurm snapshots (and the allocations file,
for jobs held back so that another programme's reserved GPUs stay free), shared by the spawn
page and (later) the support dashboard."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from .allocations import Allocations, gpu_totals, plan_guards
from .allocations.loader import current as current_allocations
from .slurm.models import Job, Node

#: Slurm's pending reasons in plain words
PENDING_REASONS = {
    "None": "just submitted; the scheduler has not looked at it yet",
    "Priority": "other jobs are ahead of yours in the queue",
    "Resources": "waiting for the GPUs, CPUs or memory you asked for to free up",
    "QOSMaxGRESPerUser": "your quality of service allows no more GPUs at once",
    "AssocGrpGRESMinutes": "your project has used up its GPU-hour grant",
    "AssocGrpGRES": "your project has as many GPUs as it may use at once",
    "QOSGrpGRES": "your quality of service has as many of these GPUs as it may use at once",
    "AssocGrpBilling": "your programme holds as many GPUs of the reserved type as it may at "
                       "once; the rest are kept free for the programmes that reserved them",
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


_NEVER = datetime.max.replace(tzinfo=UTC)


def _queue_order(job: Job) -> tuple:
    return -job.priority, job.submit_time or _NEVER, job.job_id


def queue_positions(jobs: Iterable[Job]) -> dict[int, tuple[int, int]]:
    """Job id → (position, pending) of every pending job among the pending jobs of its
    partition (1 = next), from one sort per partition: for many waiting jobs at once (every
    spawn page of a storm, a dashboard's table), where asking job by job sorts the queue once
    per job."""
    by_partition: dict[str, list[Job]] = {}
    for j in jobs:
        if j.state.is_pending:
            by_partition.setdefault(j.partition, []).append(j)
    out = {}
    for pending in by_partition.values():
        pending.sort(key=_queue_order)
        for i, j in enumerate(pending, 1):
            out[j.job_id] = (i, len(pending))
    return out


def queue_position(job: Job, jobs: Iterable[Job]) -> tuple[int, int]:
    """(position, pending) of ``job`` among the pending jobs of its partition (1 = next);
    position 0 when it does not pend. For many jobs of one queue, :func:`queue_positions`."""
    same = [j for j in jobs if j.partition == job.partition]
    return queue_positions(same).get(job.job_id,
                                     (0, sum(1 for j in same if j.state.is_pending)))


def estimated_start(job: Job, now: datetime | None = None) -> datetime | None:
    """Slurm's estimate (backfill's ``start_time`` of a pending job), if it has one."""
    now = now or datetime.now(UTC)
    if not job.state.is_pending or job.start_time is None or job.start_time.year < 2000:
        return None
    return job.start_time if job.start_time > now else None


@dataclass(frozen=True)
class Advice:
    text: str


@dataclass(frozen=True)
class ReservedWait:
    """A job held back so that other programmes' reserved GPUs stay free."""

    programme: str
    sharing: tuple[str, ...]      # the programmes under the same limit (its own included)
    limit: int                    # GPUs of ``gpu_type`` they may hold at once
    held: int                     # ... and hold now
    gpu_type: str
    kept_free_for: tuple[str, ...]
    reserved: int                 # GPUs reserved for those programmes together

    @property
    def headroom(self) -> int:
        return max(self.limit - self.held, 0)

    def words(self) -> str:
        others = [p for p in self.sharing if p != self.programme]
        who = (f"your programme ({self.programme})" if not others else
               f"your programme ({self.programme}) and {', '.join(others)} together")
        return (f"{who} may hold at most {self.limit} {self.gpu_type} GPUs at once and hold "
                f"{self.held} now, so that the {self.reserved} reserved for "
                f"{' and '.join(self.kept_free_for)} stay free for them")


def _gpus_of_type(job: Job, gpu_type: str, nodes: list[Node]) -> int:
    if job.gpu_type:
        return job.gpus if job.gpu_type == gpu_type else 0
    typed = {n.gpu_type for n in nodes if job.partition in n.partitions}
    return job.gpus if typed == {gpu_type} else 0


def reserved_wait(job: Job, jobs: Iterable[Job], nodes: Iterable[Node],
                  allocs: Allocations | None) -> ReservedWait | None:
    """Why ``job`` waits behind another programme's reservation, if it does (Slurm's reason
    ``AssocGrpBilling`` from a guard limit of :mod:`workbench.allocations.guards`)."""
    if allocs is None or job.reason != "AssocGrpBilling":
        return None
    prog = allocs.programme_of(job.account)
    nodes = list(nodes)
    if prog is None or not nodes:
        return None
    guards = plan_guards(allocs, gpu_totals(nodes))
    limit = guards.limit_of(prog.name)
    if limit is None:
        return None
    _, gpus, sharing = limit
    held = sum(_gpus_of_type(j, guards.gpu_type, nodes) for j in jobs
               if j.state.is_running and (p := allocs.programme_of(j.account)) is not None
               and p.name in sharing)
    free_for = guards.kept_free_for.get(prog.name, ())
    reserved = sum(allocs.programme(n).reserved.get(guards.gpu_type, 0) for n in free_for)
    return ReservedWait(prog.name, sharing, gpus, held, guards.gpu_type, free_for, reserved)


def start_sooner(job: Job, nodes: Iterable[Node], cpus: int = 1,
                 headroom: int | None = None) -> list[Advice]:
    """Ways to start now: another partition or GPU type with idle GPUs, or fewer GPUs
    (``headroom``: the most GPUs of this kind the job's programme may still take)."""
    nodes = [n for n in nodes if n.ready]
    out = []
    if job.gpus:
        best_here = max((n.gpus_idle for n in nodes if job.partition in n.partitions
                         and n.idle_cpus >= cpus), default=0)
        if headroom is not None:
            best_here = min(best_here, headroom)
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


_DEFAULT = object()


def waiting_message(job: Job, jobs: Iterable[Job], nodes: Iterable[Node] | None = None,
                    now: datetime | None = None, allocations=_DEFAULT,
                    positions: Mapping[int, tuple[int, int]] | None = None) -> str:
    """One line for the spawn page: reason, position, estimate, advice. ``allocations``: the
    programmes (default: the current allocations file), for jobs held back by a reservation.
    ``positions``: :func:`queue_positions` of ``jobs``, when many messages are made from the
    same jobs (default: ``job``'s own position, one sort of the queue)."""
    now = now or datetime.now(UTC)
    jobs = list(jobs)
    nodes = list(nodes) if nodes is not None else None
    allocs = current_allocations() if allocations is _DEFAULT else allocations
    held = reserved_wait(job, jobs, nodes or [], allocs) if nodes is not None else None
    why = held.words() if held else describe_pending(job.reason)
    parts = [f"Job {job.job_id} is waiting in partition {job.partition}: {why}."]
    pos, total = (positions.get(job.job_id, (0, 0)) if positions is not None
                  else queue_position(job, jobs))
    if pos:
        parts.append(f"Position {pos} of {total} waiting there.")
    start = estimated_start(job, now)
    if start:
        minutes = max(1, round((start - now).total_seconds() / 60))
        parts.append(f"Slurm expects it to start around {start:%H:%M} UTC (in {minutes} min).")
    if nodes is not None:
        if held and job.gpus > held.limit:
            parts.append(f"It asks for more than your programme may ever hold at once: ask "
                         f"for at most {held.limit}.")
        elif held:
            idle = sum(n.gpus_idle for n in nodes if n.gpu_type == held.gpu_type)
            if idle:
                parts.append(f"{idle} {held.gpu_type} GPUs are idle, {min(idle, held.reserved)} "
                             f"of them kept for {' and '.join(held.kept_free_for)}; yours "
                             "starts when jobs under your programme's limit end.")
        advice = start_sooner(job, nodes, max(job.cpus, 1), held.headroom if held else None)
        if advice:
            parts.append("To start sooner: " + "; ".join(a.text for a in advice) + ".")
    return " ".join(parts)
