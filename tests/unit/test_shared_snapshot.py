"""The shared job snapshot's bounds on what users can make the controller do: a floor between
queries (``min_interval``), the synchronous reader a kernel's panels use, the recheck a
dataset open naming an unknown job uses, and a failure shared by the callers of its time.

Slurm is a recorded ``squeue --json`` behind a counting client; the same counts on the real
cluster, from outside, are in tests/integration/test_cluster.py."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from workbench.catalogue import lineage
from workbench.slurm import SlurmUnavailable, parse
from workbench.slurm.snapshot import JobSnapshot

SQUEUE = (Path(__file__).parent.parent / "fixtures" / "squeue-22.05.json").read_text()
RUNNING = 2  # alice's running job in the recording (job 1 has FAILED)
_clusters = itertools.count()


class CountingSlurm:
    """A SlurmClient that answers ``squeue`` from the recording (plus ``extra`` jobs), after
    ``delay`` seconds, or fails while ``down``; it counts the calls, sync and async."""

    slurm_conf = None

    def __init__(self, delay: float = 0.0):
        self.bindir = f"counted-{next(_clusters)}"  # a cluster of its own: nothing shared
        self.delay, self.calls, self.down, self.extra = delay, 0, False, []

    def _answer(self, query):
        assert query.cmd == "squeue"
        self.calls += 1
        if self.down:
            raise SlurmUnavailable(["squeue"], 1, "", "Unable to contact slurm controller")
        return [*query.parse(SQUEUE), *self.extra]

    def run(self, query):
        time.sleep(self.delay)
        return self._answer(query)

    async def arun(self, query):
        await asyncio.sleep(self.delay)
        return self._answer(query)


def test_threads_share_one_read_and_the_floor_holds_whatever_they_ask():
    slurm = CountingSlurm(delay=0.05)
    snap = JobSnapshot(slurm, max_age=0.2, min_interval=0.2)
    results = []
    threads = [threading.Thread(target=lambda: results.append(snap.read(0)))
               for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert slurm.calls == 1 and all(r is results[0] for r in results)
    assert snap.read(0) is results[0] and slurm.calls == 1  # younger than min_interval
    time.sleep(0.25)
    assert snap.read(0)[RUNNING].user == "alice" and slurm.calls == 2


def test_without_a_floor_a_reader_gets_what_it_asks_for():
    """The spawner's snapshot (min_interval 0): max_age alone decides, as before."""
    slurm = CountingSlurm()
    snap = JobSnapshot(slurm, max_age=10)
    asyncio.run(snap.get())
    asyncio.run(snap.get())
    assert slurm.calls == 1
    asyncio.run(snap.get(0))
    assert slurm.calls == 2
    snap.invalidate()
    snap.read()
    assert slurm.calls == 3


def test_a_failure_is_the_answer_until_min_interval_has_passed():
    slurm = CountingSlurm()
    slurm.down = True
    snap = JobSnapshot(slurm, max_age=0.2, min_interval=0.2)
    for _ in range(10):
        with pytest.raises(SlurmUnavailable):
            snap.read()
    assert slurm.calls == 1
    slurm.down = False
    time.sleep(0.25)
    assert RUNNING in snap.read() and slurm.calls == 2


async def test_callers_at_once_that_want_a_fresh_value_share_a_query():
    # 40 sessions stopped at once each ask for the job list as it is now (max_age 0)
    slurm = CountingSlurm(delay=0.05)
    snap = JobSnapshot(slurm, max_age=1.0)
    answers = await asyncio.gather(*(snap.get(0) for _ in range(40)))
    # the first caller's query started before the others asked: they share the next one
    assert slurm.calls == 2 and all(a is answers[-1] for a in answers[1:])
    await snap.get(0)  # asked after every query so far started: a query of its own
    assert slurm.calls == 3


async def test_stops_at_once_share_queries_though_each_cancel_invalidates():
    slurm = CountingSlurm(delay=0.05)
    snap = JobSnapshot(slurm, max_age=1.0)

    async def stop():
        await snap.get(0)  # the session's workers, as the queue is now
        snap.invalidate()  # its scancel: the next reader must see the queue after it

    await asyncio.gather(*(stop() for _ in range(40)))
    # one after another, each stop's cancel sent the next stop to a query of its own: 40
    assert slurm.calls == 2
    asked_after = slurm.calls
    await snap.get(0)  # asked after the last invalidate: a query started after it
    assert slurm.calls == asked_after + 1


async def test_rechecks_at_once_share_one_query():
    slurm = CountingSlurm(delay=0.05)
    snap = JobSnapshot(slurm, max_age=60, min_interval=1.0)
    await snap.get()
    assert slurm.calls == 1
    started = time.monotonic()
    answers = await asyncio.gather(*(snap.recheck() for _ in range(100)))
    # one query, started after they asked and a min_interval after the first
    assert slurm.calls == 2 and all(a is answers[0] for a in answers)
    assert 0.9 <= time.monotonic() - started < 1.5


async def test_rechecks_one_after_another_cost_one_query_per_min_interval():
    slurm = CountingSlurm()
    snap = JobSnapshot(slurm, max_age=60, min_interval=0.1)
    started = time.monotonic()
    for _ in range(6):
        await snap.recheck()
    took = time.monotonic() - started
    assert slurm.calls == 6 and took >= 0.5  # spaced: 6 queries cannot come sooner


async def test_rechecks_waiting_for_a_failed_query_all_get_its_failure():
    slurm = CountingSlurm(delay=0.05)
    slurm.down = True
    snap = JobSnapshot(slurm, max_age=60, min_interval=0.1)
    with pytest.raises(SlurmUnavailable):
        await snap.get()
    answers = await asyncio.gather(*(snap.recheck() for _ in range(20)),
                                   return_exceptions=True)
    assert slurm.calls == 2 and all(isinstance(a, SlurmUnavailable) for a in answers)


# -- a dataset open naming a job --------------------------------------------------------------

@pytest.fixture
def fast_recheck(monkeypatch):
    monkeypatch.setattr(lineage, "RECHECK_INTERVAL", 0.2)


async def test_opens_naming_bogus_job_ids_cost_one_squeue_per_recheck_interval(fast_recheck):
    slurm = CountingSlurm(delay=0.02)

    async def check(job_id):
        try:
            await lineage.check_job(slurm, "alice", job_id, None)
        except lineage.JobCheckError as e:
            return str(e)

    answers = await asyncio.gather(*(check(10**9 + i) for i in range(100)))
    assert answers[7] == f"job {10**9 + 7} is not a running job of alice's"
    assert slurm.calls == 2  # the snapshot, and one recheck for all hundred
    started = time.monotonic()
    for i in range(5):  # one after another: each waits for the next allowed query
        assert await check(i + 100) is not None
    assert slurm.calls == 7 and time.monotonic() - started >= 0.8
    # the caller's running job is answered from the snapshot, with no call at all
    ctx = await lineage.check_job(slurm, "alice", RUNNING, None)
    assert (ctx.job_id, ctx.node, ctx.account) == (RUNNING, "cpu-1", "startup-helios")
    assert slurm.calls == 7


async def test_a_job_that_started_after_the_snapshot_is_found_by_the_recheck(fast_recheck):
    slurm = CountingSlurm()
    await lineage.check_job(slurm, "alice", RUNNING, None)
    running = {j.job_id: j for j in parse.parse_jobs(SQUEUE)}[RUNNING]
    slurm.extra = [replace(running, job_id=77)]  # submitted and started since
    ctx = await lineage.check_job(slurm, "alice", 77, None)
    assert ctx.job_id == 77 and slurm.calls == 2


async def test_someone_elses_or_an_ended_job_is_refused(fast_recheck):
    slurm = CountingSlurm()
    with pytest.raises(lineage.JobCheckError, match="not a running job of bob's"):
        await lineage.check_job(slurm, "bob", RUNNING, None)      # alice's
    with pytest.raises(lineage.JobCheckError, match="job 1 is not a running job"):
        await lineage.check_job(slurm, "alice", 1, None)          # FAILED
