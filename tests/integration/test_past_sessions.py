"""Past sessions on the real hub and cluster: one stopped by its owner, one killed by its
walltime, each with how it ended and the CPU efficiency sacct's own numbers give; only the
owner, support and admins may read them."""

from __future__ import annotations

import pytest

from workbench.slurm import Query, queries
from workbench.slurm.parse import parse_cpu_time, parse_rows

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

SHORT = {"partition": "cpu", "account": "startup-helios", "gpus": 0, "cpus": 1,
         "memory": "1G", "runtime": "00:01:00"}


def start(api, options, wait_for) -> int:
    r = api.post(f"{api.base}/users/{api.user}/server", json={"user_options": options})
    assert r.status_code in (201, 202), r.text
    wait_for(lambda: (api.get(f"{api.base}/users/{api.user}").json()["servers"].get("") or {})
             .get("ready"), f"{api.user}'s server ready", 180)
    ours = [j for j in api.slurm.run(queries.jobs())
            if j.user == api.user and j.state.is_running and j.name.startswith("jupyter")]
    return max(j.job_id for j in ours)


def sacct_cpu_efficiency(slurm, job_id: int) -> float:
    """seff's formula on sacct's own fields, read here (not through the workbench): the job's
    row with its steps' CPU time summed in (sacct -X would show the allocation's own, 0)."""
    rows = slurm.run(Query("sacct", ("-nP", "-j", str(job_id),
                                     "--format=JobIDRaw,TotalCPU,ElapsedRaw,AllocCPUS"),
                           parse_rows))
    _, total, elapsed, cpus = next(r for r in rows if r[0] == str(job_id))
    return parse_cpu_time(total) / (int(elapsed) * int(cpus))


def test_a_stopped_and_a_timed_out_session_show_how_they_ended_and_their_cpu_use(
        hub_api, slurm, wait_for):
    alice = hub_api("alice")
    alice.slurm = slurm
    stopped = start(alice, {**SHORT, "runtime": "00:10:00"}, wait_for)
    assert alice.delete(f"{alice.base}/users/alice/server").status_code in (202, 204)
    wait_for(lambda: not alice.get(f"{alice.base}/users/alice").json()["servers"],
             "alice's server stopped", 60)
    timed_out = start(alice, SHORT, wait_for)  # one minute: Slurm ends it
    wait_for(lambda: not alice.get(f"{alice.base}/users/alice").json()["servers"],
             "the one-minute session ended by its walltime", 240)

    def listed():
        r = alice.get(f"{alice.base}/workbench/sessions/alice")
        assert r.status_code == 200, r.text
        by_job = {s["job_id"]: s for s in r.json()["sessions"]}
        done = all(by_job.get(j, {}).get("end") for j in (stopped, timed_out))
        return by_job if done else None
    by_job = wait_for(listed, "both sessions in accounting with an end", 120)
    assert by_job[stopped]["ended"] == "stopped by you"
    assert by_job[timed_out]["ended"] == "walltime reached"
    assert by_job[timed_out]["state"] == "TIMEOUT"
    for job in (stopped, timed_out):
        s = by_job[job]
        assert (s["project"], s["partition"], s["gpus"]) == ("startup-helios", "cpu", 0)
        assert s["output"].endswith(f".jupyterhub-slurm-{job}.log")
        assert s["output_tail"]  # the server's own last lines
        assert s["efficiency"]["cpu_efficiency"] == pytest.approx(
            sacct_cpu_efficiency(slurm, job), abs=0.005)
        assert s["efficiency"]["gpu_util_pct"] is None  # no GPU held: nothing measured


def test_only_the_owner_support_and_admins_read_someones_sessions(hub_api):
    bob, sam, maria = hub_api("bob"), hub_api("sam"), hub_api("maria")
    assert maria.get(f"{maria.base}/workbench/sessions/alice").status_code == 403
    refused = bob.get(f"{bob.base}/workbench/sessions/alice")
    assert refused.status_code == 403 and "only alice" in refused.json()["message"]
    assert sam.get(f"{sam.base}/workbench/sessions/alice").status_code == 200
    assert bob.get(f"{bob.base}/workbench/sessions/bob").status_code == 200
