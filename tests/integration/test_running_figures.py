"""A running session's figures so far, on the real cluster: what ``sstat`` says its steps
used, shared by every reader (one call for all sessions), in the walltime API that
JupyterLab's popup reads and in the support dashboard's sessions table."""

import asyncio
import math
import re
import time

import pytest

from tests.sessions import start_bob_cpu
from tests.slurm_jobs import sbatch
from workbench.dashboards.source import DashboardSettings, DashboardSource
from workbench.slurm import SlurmClient, queries
from workbench.slurm.snapshot import LiveUsageSnapshot

pytestmark = pytest.mark.slurm

#: busy for a minute on one CPU, holding ~50 MB: a job whose use sstat can see grow
BURN = ("#!/bin/bash\npython3 -c \"import time; a = bytearray(50_000_000); t = time.time()\n"
        "while time.time() - t < 60: pass\"\n")


def _sstat(slurm, job_id):
    return slurm.run(queries.live_usage([job_id])).get(job_id)


async def test_many_readers_of_running_jobs_share_one_sstat_and_read_what_it_says(
        slurm, tmp_path, wait_for):
    from benchmarks._cluster import CallShim
    jobs = [sbatch(slurm, "bob", "-p", "cpu", "-A", "research-medai", "-c", "1",
                   "--mem=512M", "-t", "3", script=BURN) for _ in range(2)]
    try:
        wait_for(lambda: all((u := _sstat(slurm, j)) and u.cpu_time_s >= 2 for j in jobs),
                 "both jobs' steps used CPU", timeout=60)
        shim = CallShim(tmp_path)
        shim.install()
        counted = SlurmClient(slurm_conf=slurm.slurm_conf, bindir=str(shim.bindir))
        snap = LiveUsageSnapshot(counted, max_age=30, min_interval=2)
        first = await snap.get(jobs[0])
        # 50 sessions' JupyterLabs asking at once: the first job is in the last answer
        same = await asyncio.gather(*(snap.get(jobs[0]) for _ in range(50)))
        assert shim.calls(0, float("inf")) == {"sstat": 1}
        assert all(u is first for u in same)
        # a second job asked for within min_interval: not measured yet, no second call
        assert await snap.get(jobs[1]) is None
        assert shim.calls(0, float("inf")) == {"sstat": 1}
        time.sleep(2.1)
        # after it, one call for both jobs asked for
        second = await snap.get(jobs[1])
        assert shim.calls(0, float("inf")) == {"sstat": 2}
        assert second is not None and (await snap.get(jobs[0])) is not None
        assert shim.calls(0, float("inf")) == {"sstat": 2}
        # what sstat says, read again now: CPU time only grows, by at most the time since
        # (one CPU each), and the ~50 MB the job holds is its peak
        now = _sstat(slurm, jobs[0])
        assert first.cpu_time_s <= now.cpu_time_s <= first.cpu_time_s + 10
        assert 50e6 <= now.max_rss_bytes < 200e6
        assert [s.step for s in now.steps] == ["batch"]
    finally:
        for j in jobs:
            slurm.run(queries.cancel(j))


@pytest.mark.hub
def test_a_running_sessions_figures_so_far_in_the_walltime_api_and_the_support_table(
        slurm, hub_api, wait_for, tmp_path):
    api = start_bob_cpu(hub_api("bob"), wait_for)
    [job] = [j for j in slurm.run(queries.jobs()) if j.user == "bob" and j.state.is_running]

    # the walltime API (what JupyterLab's status bar popup shows)
    answer = api.get(f"{api.base}/workbench/walltime/bob").json()
    after = _sstat(slurm, job.job_id)
    u = answer["usage"]
    assert answer["usage_error"] is None and u["job_id"] == job.job_id
    assert u["ended"] == "still running" and u["cpus"] == 1
    assert u["requested_memory_bytes"] == 2**30
    # the server's start took CPU; the answer is sstat's, at most 30 s old (one CPU)
    assert 0 < u["cpu_time_s"] <= after.cpu_time_s <= u["cpu_time_s"] + 31
    assert u["cpu_efficiency"] == pytest.approx(u["cpu_time_s"] / u["elapsed_s"], rel=1e-6)
    assert 0 < u["peak_memory_bytes"] and u["memory_efficiency"] == pytest.approx(
        u["peak_memory_bytes"] / 2**30)
    assert u["gpus_held"] == 0 and u["gpu_util_pct"] is None  # not measured, never made up

    # the support dashboard's sessions table: the same figures, from its own shared sstat
    source = DashboardSource(DashboardSettings(cache_dir=str(tmp_path / "cache"),
                                               slurm_conf=slurm.slurm_conf))
    before, t0 = _sstat(slurm, job.job_id), time.time()
    view = source.support()
    after, t1 = _sstat(slurm, job.job_id), time.time()
    assert not view.sessions.message, view.sessions.message
    row = view.sessions.table.set_index("job id").loc[job.job_id]
    cpu = re.fullmatch(r"(\d+) % of 1 CPU", row["CPU use so far"])
    assert cpu, row["CPU use so far"]
    # its sstat ran between ours, in whole seconds of CPU time and of elapsed time
    start = job.start_time.timestamp()
    lowest = 100 * before.cpu_time_s / math.ceil(t1 - start)
    highest = 100 * after.cpu_time_s / math.floor(t0 - start)
    assert lowest - 1 <= int(cpu.group(1)) <= highest + 1, (lowest, cpu.group(0), highest)
    assert re.fullmatch(r"[\d.]+ GB of 1 GB", row["peak memory so far"]), row
    assert row["GPU use so far"] == ""  # a CPU session holds no GPU
