"""One ``squeue`` (one ``sinfo``, one ``scontrol show partition``, one ``sstat``) for every
reader: shared, briefly cached snapshots.

Spawners, dashboards and widgets in one process ask a :class:`Snapshot` instead of running
their own command; concurrent callers share one call, and the controller sees at most one
query per ``max_age`` however many sessions there are. A caller that needs fresher data (a
spawn in progress) passes a smaller ``max_age``; one that only checks liveness passes a larger.
A snapshot with a ``min_interval`` never queries more often than that, whatever its readers
ask: what a user can trigger (a dataset open naming a job, a notebook's panels) costs the
controller one query per ``min_interval`` at most, however many requests or panels there are.

Coroutines read it with ``await snap.get()`` (hub, hub services); threads with
``snap.read()`` (a notebook's kernel: its panels refresh from threads, not from an event
loop). Both run the same :class:`~workbench.slurm.client.Query` and keep the same value; a
process uses one or the other (the two do not wait for each other).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from . import queries
from .client import Query, SlurmClient
from .models import Job, LiveUsage, Node, Partition

T = TypeVar("T")


class Snapshot(Generic[T]):
    """The value of one query, refreshed when a reader finds it older than it accepts.

    ``max_age``: the default age (s) a reader accepts. ``min_interval``: the least time (s)
    between two queries: a reader asking for a younger value gets the current one, and a
    failure is the answer for that long (0: every stale read queries, as for spawns)."""

    def __init__(self, client: SlurmClient, query: Callable[[], Query], index: Callable,
                 max_age: float = 1.0, min_interval: float = 0.0):
        self.client = client
        self.query = query
        self.index = index
        self.max_age = max_age
        self.min_interval = min_interval
        self._value: T | None = None
        self._started = float("-inf")  # when the query behind _value was started
        self._tried = float("-inf")  # when the last query (answered or failed) was started
        self._failure: Exception | None = None  # what the last query raised, if it failed
        self._not_before = float("-inf")  # readers need a query started after this
        self._lock = asyncio.Lock()
        self._thread_lock = threading.Lock()

    @property
    def age(self) -> float:
        """Seconds since the query behind the current value was started."""
        return time.monotonic() - self._started

    def _cached(self, max_age: float | None) -> bool:
        """True when a reader accepting ``max_age`` gets the current value; raises the last
        failure while it is younger than ``min_interval``; False: a query is due."""
        limit = max(self.max_age if max_age is None else max_age, self.min_interval)
        if self._started >= self._not_before and self.age <= limit:
            return True
        if (self._failure is not None and self._tried >= self._not_before
                and time.monotonic() - self._tried < self.min_interval):
            raise self._failure
        return False

    def _begin(self) -> float:
        self._tried = time.monotonic()
        return self._tried

    def _keep(self, started: float, result) -> T:
        self._failure = None
        self._value = self.index(result)
        self._started = started
        return self._value

    async def _query(self) -> T:
        before = self._tried
        started = self._begin()
        try:
            result = await self.client.arun(self.query())
        except Exception as e:  # kept for the callers of its time, then raised
            self._failure = e
            raise
        except asyncio.CancelledError:  # as if it had not started: a waiter runs its own
            self._tried = before
            raise
        return self._keep(started, result)

    async def get(self, max_age: float | None = None) -> T:
        """The value, from a query started no more than ``max_age`` seconds ago (or
        ``min_interval``, if longer) and after the last :meth:`invalidate` (Slurm errors
        propagate). A query started after this call (and after the last invalidate before
        it) satisfies any ``max_age``, 0 included: callers that all want a fresh value (40
        sessions stopped at once) share one query instead of running theirs one after
        another, and an invalidate after this call (another session's scancel) does not
        send this caller to the back of the line for yet another query."""
        asked, not_before = time.monotonic(), self._not_before
        if self._cached(max_age):
            return self._value
        async with self._lock:
            # another caller refreshed it while we waited
            if self._cached(max_age) or self._started >= max(asked, not_before):
                return self._value
            return await self._query()

    def read(self, max_age: float | None = None) -> T:
        """:meth:`get` for synchronous code (threads): blocks while the one query runs."""
        if self._cached(max_age):
            return self._value
        with self._thread_lock:
            if self._cached(max_age):
                return self._value
            started = self._begin()
            try:
                result = self.client.run(self.query())
            except Exception as e:  # kept for the callers of its time, then raised
                self._failure = e
                raise
            return self._keep(started, result)

    async def recheck(self) -> T:
        """The value from a query started after this call: for a reader the current value
        did not satisfy (a job it does not show). Every caller waiting at the same time gets
        the same query's answer (or failure), and it starts no sooner than ``min_interval``
        after the previous one, so a flood of rechecks costs one query per
        ``min_interval`` (each caller waits up to that long)."""
        asked = max(time.monotonic(), self._not_before)
        async with self._lock:
            if self._tried >= asked:  # a query started after we asked has answered
                if self._failure is not None:
                    raise self._failure
                return self._value
            wait = self._tried + self.min_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            return await self._query()

    def invalidate(self) -> None:
        """After a submit or cancel of ours: the next reader gets a query started after now,
        never one that was already running (it could not know the new job)."""
        self._not_before = time.monotonic()


class JobSnapshot(Snapshot[dict[int, Job]]):
    """All jobs by id."""

    def __init__(self, client: SlurmClient, max_age: float = 1.0, min_interval: float = 0.0):
        super().__init__(client, queries.jobs, lambda jobs: {j.job_id: j for j in jobs},
                         max_age, min_interval)

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
_SHARED_LOCK = threading.Lock()


def _shared(kind: type, client: SlurmClient, *args):
    """The process-wide ``kind`` of ``client``'s cluster; the first caller's settings
    (``args``) make it."""
    key = (kind, client.slurm_conf, client.bindir)
    with _SHARED_LOCK:  # panels of a kernel ask from several threads
        snap = _SHARED.get(key)
        if snap is None:
            snap = _SHARED[key] = kind(client, *args)
    return snap


def shared_snapshot(client: SlurmClient, max_age: float = 1.0,
                    min_interval: float = 0.0) -> JobSnapshot:
    """The process-wide job snapshot for ``client``'s cluster (``max_age`` and
    ``min_interval`` as :class:`Snapshot`'s, from the first caller in the process)."""
    return _shared(JobSnapshot, client, max_age, min_interval)


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
