"""One ``squeue`` (one ``sinfo``, one ``scontrol show partition``, one ``sstat``) for every
reader: shared, briefly cached snapshots.

Spawners, dashboards and widgets in one process ask a :class:`Snapshot` instead of running
their own command; concurrent callers share one call, and the controller sees at most one
query per ``max_age`` however many sessions there are. A caller that needs fresher data (a
spawn in progress) passes a smaller ``max_age``; one that only checks liveness passes a larger.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from . import queries
from .client import Query, SlurmClient
from .models import Job, LiveUsage, Node, Partition

T = TypeVar("T")


class Snapshot(Generic[T]):
    def __init__(self, client: SlurmClient, query: Callable[[], Query], index: Callable,
                 max_age: float = 1.0):
        self.client = client
        self.query = query
        self.index = index
        self.max_age = max_age
        self._value: T | None = None
        self._started = float("-inf")  # when the query behind _value was started
        self._not_before = float("-inf")  # readers need a query started after this
        self._lock = asyncio.Lock()

    @property
    def age(self) -> float:
        """Seconds since the query behind the current value was started."""
        return time.monotonic() - self._started

    def _fresh(self, limit: float) -> bool:
        return self._started >= self._not_before and self.age <= limit

    async def get(self, max_age: float | None = None) -> T:
        """The value, from a query started no more than ``max_age`` seconds ago and after the
        last :meth:`invalidate` (Slurm errors propagate)."""
        limit = self.max_age if max_age is None else max_age
        if self._fresh(limit):
            return self._value
        async with self._lock:
            if self._fresh(limit):  # another caller refreshed it while we waited
                return self._value
            started = time.monotonic()
            result = await self.client.arun(self.query())
            self._value = self.index(result)
            self._started = started
            return self._value

    def invalidate(self) -> None:
        """After a submit or cancel of ours: the next reader gets a query started after now,
        never one that was already running (it could not know the new job)."""
        self._not_before = time.monotonic()


class JobSnapshot(Snapshot[dict[int, Job]]):
    """All jobs by id."""

    def __init__(self, client: SlurmClient, max_age: float = 1.0):
        super().__init__(client, queries.jobs, lambda jobs: {j.job_id: j for j in jobs}, max_age)

    async def jobs(self, max_age: float | None = None) -> dict[int, Job]:
        return await self.get(max_age)


class NodeSnapshot(Snapshot[list[Node]]):
    """All nodes (states, GPUs in use)."""

    def __init__(self, client: SlurmClient, max_age: float = 5.0):
        super().__init__(client, queries.nodes, list, max_age)


class PartitionSnapshot(Snapshot[dict[str, Partition]]):
    """All partitions by name (limits change rarely: a minute's age is the default)."""

    def __init__(self, client: SlurmClient, max_age: float = 60.0):
        super().__init__(client, queries.partitions, lambda ps: {p.name: p for p in ps},
                         max_age)


class LiveUsageSnapshot:
    """``sstat`` of the running jobs readers ask about, one call for all of them.

    Each reader asks for one job (a session's figures so far); the snapshot remembers which
    jobs were asked for in the last two ``max_age`` periods and asks sstat about all of
    them at once, at most once per ``max_age`` while every asked job is in the last answer.
    A job not in the last query makes it run again, but never sooner than
    ``min_interval`` after the previous one: a storm of new sessions costs one call per
    ``min_interval``, and the jobs it missed read None ("not measured yet") until the next.
    """

    def __init__(self, client: SlurmClient, max_age: float = 30.0,
                 min_interval: float = 2.0):
        self.client = client
        self.max_age = max_age
        self.min_interval = min_interval
        self._value: dict[int, LiveUsage] = {}
        self._asked: set[int] = set()  # the job ids of the last query
        self._started = float("-inf")
        self._wanted: dict[int, float] = {}  # job id -> when a reader last asked
        self._lock = asyncio.Lock()

    def _fresh(self, job_id: int) -> bool:
        age = time.monotonic() - self._started
        return age <= self.max_age and (job_id in self._asked or age < self.min_interval)

    async def get(self, job_id: int) -> LiveUsage | None:
        """What ``job_id`` has used so far (None: sstat had nothing for it: not running,
        no step polled yet, or not asked yet). Slurm errors propagate."""
        now = time.monotonic()
        self._wanted[job_id] = now
        if self._fresh(job_id):
            return self._value.get(job_id)
        async with self._lock:
            if not self._fresh(job_id):
                started = time.monotonic()
                keep = started - 2 * self.max_age
                self._wanted = {j: t for j, t in self._wanted.items() if t >= keep}
                ids = sorted(self._wanted)
                self._value = await self.client.arun(queries.live_usage(ids))
                self._asked, self._started = set(ids), started
        return self._value.get(job_id)


_SHARED: dict[tuple, Snapshot] = {}


def _shared(kind: type, client: SlurmClient, max_age: float):
    key = (kind, client.slurm_conf, client.bindir)
    snap = _SHARED.get(key)
    if snap is None:
        snap = _SHARED[key] = kind(client, max_age)
    return snap


def shared_snapshot(client: SlurmClient, max_age: float = 1.0) -> JobSnapshot:
    """The process-wide job snapshot for ``client``'s cluster."""
    return _shared(JobSnapshot, client, max_age)


def shared_nodes(client: SlurmClient, max_age: float = 5.0) -> NodeSnapshot:
    """The process-wide node snapshot for ``client``'s cluster."""
    return _shared(NodeSnapshot, client, max_age)


def shared_partitions(client: SlurmClient, max_age: float = 60.0) -> PartitionSnapshot:
    """The process-wide partition snapshot for ``client``'s cluster."""
    return _shared(PartitionSnapshot, client, max_age)


def shared_usage(client: SlurmClient, max_age: float = 30.0) -> LiveUsageSnapshot:
    """The process-wide ``sstat`` snapshot for ``client``'s cluster (running sessions'
    figures so far; 30 s is slurmstepd's default accounting poll)."""
    return _shared(LiveUsageSnapshot, client, max_age)
