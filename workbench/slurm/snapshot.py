"""One ``squeue`` for every reader: a shared, briefly cached snapshot of all jobs.

Spawners, dashboards and widgets in one process ask :class:`JobSnapshot` instead of running
their own ``squeue``; concurrent callers share one call, and the controller sees one query
per ``max_age`` however many sessions there are.
"""

from __future__ import annotations

import asyncio
import time

from . import queries
from .client import SlurmClient
from .models import Job


class JobSnapshot:
    def __init__(self, client: SlurmClient, max_age: float = 1.0):
        self.client = client
        self.max_age = max_age
        self._jobs: dict[int, Job] = {}
        self._taken = float("-inf")
        self._lock = asyncio.Lock()
        #: how many squeue calls this snapshot made (for benchmarks and tests)
        self.calls = 0

    @property
    def age(self) -> float:
        return time.monotonic() - self._taken

    async def jobs(self, max_age: float | None = None) -> dict[int, Job]:
        """All jobs by id, no older than ``max_age`` seconds (SlurmUnavailable propagates)."""
        limit = self.max_age if max_age is None else max_age
        if self.age <= limit:
            return self._jobs
        async with self._lock:
            if self.age <= limit:  # another caller refreshed while we waited
                return self._jobs
            jobs = await self.client.arun(queries.jobs())
            self.calls += 1
            self._jobs = {j.job_id: j for j in jobs}
            self._taken = time.monotonic()
            return self._jobs


_SHARED: dict[tuple, JobSnapshot] = {}


def shared_snapshot(client: SlurmClient, max_age: float = 1.0) -> JobSnapshot:
    """The process-wide snapshot for ``client``'s cluster."""
    key = (client.slurm_conf, client.bindir)
    snap = _SHARED.get(key)
    if snap is None:
        snap = _SHARED[key] = JobSnapshot(client, max_age)
    return snap
