"""A node lost: its slurmd killed and the node marked down, as an operator does when a node
dies. Its session ends at once, the user's next page says why, the node's GPUs leave the
spawn form and support's "Failed recently" lists it; ``workbench up`` brings the node back."""

import os
import re
import subprocess

import pytest

from tests.conftest import _poll
from tests.integration.test_daemon_faults import WORKBENCH, _pid, _server
from workbench.dashboards.source import DashboardSettings, DashboardSource
from workbench.slurm import SlurmClient, queries

pytestmark = [pytest.mark.slurm, pytest.mark.hub]


def _idle_gpus_in_form(page: str, partition: str) -> int:
    m = re.search(rf"<tr><td>{partition}</td><td>[^<]*</td>\s*<td>(\d+)</td>", page)
    assert m, f"no row for {partition} in the spawn form"
    return int(m.group(1))


def test_a_node_lost_ends_its_session_says_why_and_leaves_the_form(
        slurm, hub_api, browser_login, hub_url, tmp_path):
    node = "a100-1"
    alice = hub_api("alice")
    r = alice.post(f"{alice.base}/users/alice/server", json={"user_options": {
        "partition": "gpu-a100", "account": "startup-helios", "gpus": 1, "gpu_type": "a100",
        "cpus": 1, "memory": "1G", "runtime": "00:10:00"}})
    assert r.status_code in (201, 202), r.text
    _poll(lambda: _server(alice, "alice").get("ready"), "alice's server ready", 120)
    [job] = [j for j in slurm.run(queries.jobs()) if j.user == "alice" and j.state.is_running
             and j.partition == "gpu-a100"]
    browser, igor = browser_login("alice"), browser_login("igor")  # igor: no session
    assert _idle_gpus_in_form(igor.get(f"{hub_url}hub/spawn").text, "gpu-a100") >= 1
    pid = _pid(f"slurmd-{node}")
    assert pid
    try:
        os.kill(pid, 9)
        slurm.run(SlurmClient.command("scontrol", [
            "update", f"nodename={node}", "state=down", "reason=fault test: node lost"]))
        # Slurm ends the job on the lost node; the hub sees it at its next poll
        def ended():
            end = slurm.run(queries.job_end(job.job_id))
            return end if end and end[0].is_finished else None
        end = _poll(ended, "the job's end", 90, interval=1)
        assert end[0].value == "NODE_FAIL", end
        _poll(lambda: not _server(alice, "alice"), "alice's server gone from the hub", 90)
        # her next page says why; the node's GPUs are no longer offered
        page = browser.get(f"{hub_url}hub/spawn").text
        assert f"Your last session (job {job.job_id})" in page and "NODE_FAIL" in page
        assert "its node failed" in page
        for form in (page, igor.get(f"{hub_url}hub/spawn").text):
            assert _idle_gpus_in_form(form, "gpu-a100") == 0
        # support sees the failure and the node's reason
        source = DashboardSource(DashboardSettings(cache_dir=str(tmp_path / "cache"),
                                                   slurm_conf=slurm.slurm_conf))
        view = source.support()
        nodes = view.nodes.table.set_index("node")
        assert nodes.loc[node, "problem"] == "fault test: node lost"
        _poll(lambda: str(job.job_id) in set(source.support().failures.table["job id"]),
              "the lost session in Failed recently", 90, interval=5)
        row = source.support().failures.table.set_index("job id").loc[str(job.job_id)]
        assert row["what happened"] == "node failure (NODE_FAIL)"
    finally:
        subprocess.run([WORKBENCH, "up"], check=True, capture_output=True, timeout=300)
    assert next(n for n in slurm.run(queries.nodes()) if n.name == node).ready
