"""Typed results of Slurm queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple


class JobState(StrEnum):
    """Slurm's job states (``squeue``/``sacct`` long names)."""

    PENDING = "PENDING"
    CONFIGURING = "CONFIGURING"
    RUNNING = "RUNNING"
    COMPLETING = "COMPLETING"
    SUSPENDED = "SUSPENDED"
    REQUEUED = "REQUEUED"
    RESIZING = "RESIZING"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    REVOKED = "REVOKED"
    SPECIAL_EXIT = "SPECIAL_EXIT"
    STOPPED = "STOPPED"
    SIGNALING = "SIGNALING"
    STAGE_OUT = "STAGE_OUT"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, text: str) -> JobState:
        # sacct writes "CANCELLED by 1001"; unknown words map to UNKNOWN
        word = (text or "").split()[0] if text else ""
        try:
            return cls(word.upper())
        except ValueError:
            return cls.UNKNOWN

    @property
    def is_pending(self) -> bool:
        return self in (JobState.PENDING, JobState.CONFIGURING, JobState.REQUEUED)

    @property
    def is_running(self) -> bool:
        return self in (JobState.RUNNING, JobState.COMPLETING, JobState.RESIZING,
                        JobState.SIGNALING, JobState.STAGE_OUT)

    @property
    def is_active(self) -> bool:
        return self.is_pending or self.is_running or self is JobState.SUSPENDED

    @property
    def is_finished(self) -> bool:
        return not self.is_active and self is not JobState.UNKNOWN


@dataclass(frozen=True)
class Job:
    job_id: int
    name: str
    user: str
    account: str
    partition: str
    state: JobState
    reason: str = ""
    nodes: str = ""
    batch_host: str = ""
    comment: str = ""
    gpus: int = 0
    gpu_type: str = ""
    cpus: int = 0
    time_limit_min: int | None = None
    submit_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    exit_code: int | None = None
    priority: int = 0
    gpu_indices: tuple[int, ...] = ()  # the GPUs Slurm gave a running job (CUDA_VISIBLE_DEVICES)
    memory_bytes: int | None = None  # memory of the whole job (its TRES ``mem``); None: unknown


@dataclass(frozen=True)
class Node:
    name: str
    address: str
    state: str
    flags: tuple[str, ...] = ()
    partitions: tuple[str, ...] = ()
    cpus: int = 0
    idle_cpus: int = 0
    memory_mb: int = 0
    alloc_memory_mb: int = 0
    gpu_type: str = ""
    gpus: int = 0
    gpus_used: int = 0
    reason: str = ""

    @property
    def ready(self) -> bool:
        """Up and schedulable (idle, mixed or allocated; not drained, down or unreachable)."""
        bad = {"DRAIN", "DRAINING", "DRAINED", "NOT_RESPONDING", "FAIL", "MAINTENANCE"}
        return self.state in ("idle", "mixed", "allocated") and not bad & set(self.flags)

    @property
    def in_maintenance(self) -> bool:
        """Up but in an operator's maintenance reservation: its slurmd answers, users' jobs
        wait for the reservation's end."""
        bad = {"DRAIN", "DRAINING", "DRAINED", "NOT_RESPONDING", "FAIL"}
        return (self.state in ("idle", "mixed", "allocated") and "MAINTENANCE" in self.flags
                and not bad & set(self.flags))

    @property
    def needs_resume(self) -> bool:
        """Down or drained, e.g. after the local cluster was restarted."""
        return self.state in ("down", "drained") or "DRAIN" in self.flags

    @property
    def gpus_idle(self) -> int:
        return max(self.gpus - self.gpus_used, 0) if self.ready else 0


@dataclass(frozen=True)
class Partition:
    name: str
    nodes: tuple[str, ...]
    max_time_min: int | None
    default_time_min: int | None
    default: bool = False
    state: str = "UP"
    allow_accounts: str = "ALL"
    billing_weights: dict[str, float] = field(default_factory=dict)  # TRESBillingWeights


@dataclass(frozen=True)
class Association:
    """A user's membership of a Slurm account (or an account's own association)."""

    account: str
    user: str = ""
    parent: str = ""
    grp_tres_mins: dict[str, int] = field(default_factory=dict)
    grp_tres: dict[str, int] = field(default_factory=dict)  # GrpTRES: held at once
    qos: str = ""
    default_qos: str = ""


@dataclass(frozen=True)
class GpuUse:
    """One job's GPU consumption as accounting records it (running jobs: so far)."""

    job_id: int
    account: str
    user: str
    gpus: int
    elapsed_s: int
    start: datetime | None

    @property
    def gpu_seconds(self) -> int:
        return self.gpus * self.elapsed_s


class AccountedJob(NamedTuple):
    """One job allocation as accounting records it (``sacct -X``), times in UTC; a tuple so
    that thousands of them make a table at once (the dashboards' frames)."""

    job_id: int
    job: str  # "105_3" for an array task
    name: str
    user: str
    account: str
    partition: str
    state: str  # the state word only: "CANCELLED", not "CANCELLED by 1001"
    exit_code: str
    reason: str
    submit: datetime | None
    start: datetime | None
    end: datetime | None
    elapsed_s: int
    gpus: int
    gpu_type: str  # "h100", "a100+h100" for a mix, "" when untyped or none
    nodes: str


@dataclass(frozen=True)
class StepUsage:
    """One step of a job (``batch``, ``extern``, ``0``...) as accounting records it."""

    step: str  # "batch", "extern", "0"
    state: JobState
    exit_code: str
    total_cpu_s: float
    max_rss_bytes: int | None  # None: not recorded (the step was not polled)


@dataclass(frozen=True)
class JobUsage:
    """What a job held and used, as ``seff`` reads it from accounting: the allocation's row
    (``sacct`` without ``-X``) with its steps; times in UTC.

    ``total_cpu_s`` is the allocation's ``TotalCPU`` (user + system time of its finished
    steps: what seff sums), ``req_mem_bytes`` the memory of the whole job (``ReqMem`` times
    nodes or CPUs where Slurm printed a per-node ``n`` or per-CPU ``c`` form),
    ``cancelled_by_uid`` the uid in ``CANCELLED by N`` (None: not cancelled, or Slurm did not
    say who)."""

    job_id: int
    job: str  # "105_3" for an array task
    name: str
    user: str
    account: str
    partition: str
    state: JobState
    exit_code: str
    reason: str
    start: datetime | None
    end: datetime | None
    elapsed_s: int
    total_cpu_s: float
    cpus: int
    nodes_count: int
    req_mem_bytes: int | None
    gpus: int
    gpu_type: str
    nodes: str
    cancelled_by_uid: int | None = None
    steps: tuple[StepUsage, ...] = ()

    @property
    def max_rss_bytes(self) -> int | None:
        """The largest ``MaxRSS`` of any step (seff's "Memory Utilized"), None if none
        recorded one."""
        values = [s.max_rss_bytes for s in self.steps if s.max_rss_bytes is not None]
        return max(values) if values else None

    @property
    def out_of_memory(self) -> bool:
        """Killed at its memory limit: the job or one of its steps ``OUT_OF_MEMORY`` (the
        cgroup OOM killer; sacct's exit code is then ``0:125``), or, where no cgroup holds
        memory (``JobAcctGatherParams=OverMemoryKill``: the accounting poll kills), a step
        killed by signal 9 whose peak RSS was over the job's memory (Slurm 22.05 records that
        job as ``FAILED`` ``0:9``, the step ``CANCELLED by 0``)."""
        req = self.req_mem_bytes
        return (self.state is JobState.OUT_OF_MEMORY or self.exit_code == "0:125"
                or any(s.state is JobState.OUT_OF_MEMORY for s in self.steps)
                or bool(req) and any(s.exit_code == "0:9" and s.max_rss_bytes is not None
                                     and s.max_rss_bytes > req for s in self.steps))


@dataclass(frozen=True)
class LiveUsage:
    """What a running job has used so far, as ``sstat`` reads it from its running steps
    (each step's last poll by slurmstepd's accounting: ``jobacct_gather``). ``steps`` carry
    each step's CPU time so far (``TresUsageInTot`` ``cpu``: user + system of its tasks) and
    its peak RSS so far (``MaxRSS``); their state is RUNNING."""

    job_id: int
    steps: tuple[StepUsage, ...] = ()

    @property
    def cpu_time_s(self) -> float:
        """CPU time of all running steps so far (seconds)."""
        return sum(s.total_cpu_s for s in self.steps)

    @property
    def max_rss_bytes(self) -> int | None:
        """The largest peak RSS of any step so far (what seff calls memory used)."""
        values = [s.max_rss_bytes for s in self.steps if s.max_rss_bytes is not None]
        return max(values) if values else None
