"""One ``squeue`` (one ``sinfo``, one ``scontrol show partition``) for every reader: shared,
briefly cached snapshots.

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
from .models import Job, Node, Partition

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


_SHARED: dict[tuple, Snapshot] = {}


def _shared(kind: type[Snapshot], client: SlurmClient, max_age: float) -> Snapshot:
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
