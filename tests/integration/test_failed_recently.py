"""The support dashboard's "Failed recently", on the real cluster: a job killed at its
memory limit is listed, in support's words; a session its owner stopped is not."""

import pytest

from tests.sessions import start_bob_cpu
from tests.slurm_jobs import sbatch
from workbench.dashboards.source import DashboardSettings, DashboardSource
from workbench.slurm import queries

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

#: 600 MB held for two minutes by a job that asked for 100 MB
HOG = ("#!/bin/bash\npython3 -c \"import time; a = bytearray(600 * 2**20); "
       "time.sleep(120)\"\n")


def test_an_oom_killed_job_is_listed_and_a_stopped_session_is_not(slurm, hub_api, wait_for,
                                                                  tmp_path):
    # bob's session, stopped by bob
    api = start_bob_cpu(hub_api("bob"), wait_for)
    [session] = [j for j in slurm.run(queries.jobs()) if j.user == "bob"
                 and j.state.is_running and j.name.startswith("jupyter")]
    assert api.delete(f"{api.base}/users/bob/server").status_code in (202, 204)

    # a job over its memory: Slurm's accounting poll kills it (sstat makes it poll now)
    hog = sbatch(slurm, "bob", "-p", "cpu", "-A", "research-medai", "--mem=100M", "-t", "5",
                 script=HOG)

    def ended(job_id):
        end = slurm.run(queries.job_end(job_id))
        if end is None or not end[0].is_finished:
            try:
                slurm.run(queries.live_usage([job_id]))
            except Exception:  # noqa: BLE001 - only a nudge of the poll
                pass
            return None
        return end
    oom = wait_for(lambda: ended(hog), "the memory hog ended", timeout=90, interval=2)
    # a cgroup's limit ends it OUT_OF_MEMORY; the local cluster's accounting poll
    # (OverMemoryKill, no cgroup) kills it with signal 9: Slurm 22.05 says FAILED 0:9
    assert (oom[0].value, oom[1]) in (("OUT_OF_MEMORY", "0:125"), ("FAILED", "0:9")), oom
    stopped = wait_for(lambda: ended(session.job_id), "bob's session ended", timeout=60)
    assert stopped[0].value == "CANCELLED", stopped

    source = DashboardSource(DashboardSettings(cache_dir=str(tmp_path / "cache"),
                                               slurm_conf=slurm.slurm_conf))
    wait_for(lambda: hog in set(source.history.table().value.job.astype(int)),
             "the hog in the dashboards' history", timeout=90, interval=5)
    failures = source.support().failures.table.set_index("job id")
    assert str(hog) in failures.index
    row = failures.loc[str(hog)]
    assert row["state"] == oom[0].value and row["user"] == "bob"
    assert row["what happened"] == "out of memory (killed at its memory limit)"
    assert str(session.job_id) not in failures.index  # stopped by its owner: no failure
