"""A spawner an HPC centre can trust: hub crashes, dead jobs, controller outages, queues,
orphans and culling, on the real cluster and hub."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from traitlets.config import Config

from spawners.slurm_gpu import SlurmGPUSpawner
from tests.slurm_jobs import sbatch
from workbench import daemons, hubconfig, services
from workbench.demo.cluster.local import LocalCluster
from workbench.demo.hub import LocalHub
from workbench.slurm import queries

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

WORKBENCH = str(Path(sys.executable).parent / "workbench")
ALICE_GPU = {"partition": "gpu", "account": "startup-helios", "gpus": 1, "gpu_type": "h100",
             "cpus": 1, "memory": "2G", "runtime": "00:20:00"}
BOB_A100 = {"partition": "gpu-a100", "account": "research-medai", "gpus": 1, "gpu_type": "a100",
            "cpus": 1, "memory": "2G", "runtime": "00:20:00"}


def server(api, user=None):
    return api.get(f"{api.base}/users/{user or api.user}").json()["servers"].get("")


def active_jobs(slurm, user, name=None):
    return [j for j in slurm.run(queries.jobs())
            if j.user == user and j.state.is_active and (name is None or j.name == name)]


def spawn_ready(api, options, wait_for):
    r = api.post(f"{api.base}/users/{api.user}/server", json={"user_options": options})
    assert r.status_code in (201, 202), r.text
    wait_for(lambda: (server(api) or {}).get("ready"), f"{api.user}'s server ready")


def block_a100(slurm, minutes=10):
    """Fill the gpu-a100 partition with one of bob's plain jobs; returns its id."""
    return sbatch(slurm, "bob", "-A", "research-medai", "-p", "gpu-a100", "--gres=gpu:a100:4",
                  "-t", str(minutes), script="#!/bin/bash\nsleep 600\n")


def restart_hub_hard(factory_home):
    pid = daemons.read_pid(factory_home.pidfile("jupyterhub-daemon"))
    os.kill(pid, 9)
    hub = LocalHub()
    deadline = time.monotonic() + 10
    while hub.is_up() and time.monotonic() < deadline:
        time.sleep(0.2)
    subprocess.run([WORKBENCH, "up"], check=True, capture_output=True)


def test_hub_kill9_readopts_running_and_pending_sessions(slurm, hub_api, hub_url, wait_for,
                                                         factory_home):
    alice, bob = hub_api("alice"), hub_api("bob")
    spawn_ready(alice, ALICE_GPU, wait_for)
    [alice_job] = active_jobs(slurm, "alice", "jupyter-alice")
    blocker = block_a100(slurm)
    try:
        wait_for(lambda: slurm.run(queries.jobs()) and next(
            j for j in slurm.run(queries.jobs()) if j.job_id == blocker).state.is_running,
            "the a100 blocker runs")
        r = bob.post(f"{bob.base}/users/bob/server", json={"user_options": BOB_A100})
        assert r.status_code in (201, 202), r.text  # 202: slow to start (the hub's word)
        pending = wait_for(lambda: [j for j in active_jobs(slurm, "bob", "jupyter-bob")
                                    if j.state.is_pending], "bob's job pending")
        bob_job = pending[0].job_id

        restart_hub_hard(factory_home)

        # the running session is back, through the proxy, on the same job
        wait_for(lambda: (server(alice) or {}).get("ready"), "alice's server re-adopted")
        assert alice.get(f"{hub_url}user/alice/api/status").status_code == 200
        assert [j.job_id for j in active_jobs(slurm, "alice", "jupyter-alice")] == [
            alice_job.job_id]
        # the pending spawn carries on once the partition frees up
        slurm.run(queries.cancel(blocker))
        wait_for(lambda: (server(bob) or {}).get("ready"), "bob's pending spawn completed")
        assert bob.get(f"{hub_url}user/bob/api/status").status_code == 200
        assert [j.job_id for j in active_jobs(slurm, "bob", "jupyter-bob")] == [bob_job]
        # and nothing is orphaned
        admin = hub_api("admin")
        env = {**os.environ, "JUPYTERHUB_API_URL": admin.base,
               "JUPYTERHUB_API_TOKEN": admin.headers["Authorization"].split()[1]}
        out = subprocess.run([WORKBENCH, "reconcile", "--once", "--min-age", "0"], env=env,
                             capture_output=True, text=True, check=True).stdout
        assert out.startswith("cancelled 0 orphan job(s)"), out
    finally:
        slurm.run(queries.cancel(blocker))


def test_stopping_a_start_the_restarted_hub_is_still_carrying_on(slurm, hub_api, wait_for,
                                                                 factory_home):
    """A restarted hub checks a pending start in the background (JupyterHub's 'check'); the
    user's Stop meanwhile must stop it: an answer, the job cancelled, a fresh start works."""
    bob = hub_api("bob")
    blocker = block_a100(slurm)
    try:
        wait_for(lambda: next(j for j in slurm.run(queries.jobs())
                              if j.job_id == blocker).state.is_running, "the a100 blocker runs")
        r = bob.post(f"{bob.base}/users/bob/server", json={"user_options": BOB_A100})
        assert r.status_code in (201, 202), r.text
        [pending] = wait_for(lambda: [j for j in active_jobs(slurm, "bob", "jupyter-bob")
                                      if j.state.is_pending], "bob's job pending")
        restart_hub_hard(factory_home)
        # the hub serves again while bob's start is still being carried on
        wait_for(lambda: (server(bob) or {}).get("pending"), "bob's start carried on")
        r = bob.delete(f"{bob.base}/users/bob/server")
        assert r.status_code in (202, 204), r.text
        wait_for(lambda: server(bob) is None, "bob's server stopped")
        wait_for(lambda: not active_jobs(slurm, "bob", "jupyter-bob"), "bob's job cancelled")
        assert pending.job_id not in [j.job_id for j in slurm.run(queries.jobs())
                                      if j.state.is_active]
    finally:
        slurm.run(queries.cancel(blocker))
    spawn_ready(bob, BOB_A100, wait_for)
    r = bob.delete(f"{bob.base}/users/bob/server")
    assert r.status_code in (202, 204), r.text
    wait_for(lambda: server(bob) is None, "bob's server stopped")


def login(hub_url, user, password) -> requests.Session:
    s = requests.Session()
    s.get(f"{hub_url}hub/login")
    r = s.post(f"{hub_url}hub/login", data={"username": user, "password": password,
                                            "_xsrf": s.cookies.get("_xsrf")})
    assert r.status_code == 200, r.text
    return s


def test_a_cancelled_job_is_noticed_and_the_next_visit_says_why(slurm, hub_api, hub_url,
                                                                 wait_for, demo_password):
    alice = hub_api("alice")
    spawn_ready(alice, ALICE_GPU, wait_for)
    [job] = active_jobs(slurm, "alice", "jupyter-alice")
    slurm.run(queries.cancel(job.job_id))  # an operator's scancel
    wait_for(lambda: server(alice) is None, "the hub notices the job is gone", timeout=60)
    page = login(hub_url, "alice", demo_password).get(f"{hub_url}hub/spawn").text
    m = re.search(r'id="wb-last-end">(.*?)</p>', page, re.S)
    assert m, page[:2000]
    text = " ".join(m.group(1).split())
    assert f"job {job.job_id}" in text and "CANCELLED" in text and "cancelled" in text


def hub_config() -> Config:
    """The hub's configuration as ``jupyterhub_config.py`` makes it (site overrides aside)."""
    c = Config()
    hubconfig.configure(c, hubconfig.Site.from_env())
    return c


def test_a_controller_outage_shorter_than_unknown_grace_does_not_end_a_session(
        slurm, hub_api, hub_url, wait_for, factory_home):
    # the grace itself, both sides of it, on the poll's own clock: tests/unit/
    # test_spawner_parts.py; here: a real outage reaches the hub's poll as "unknown"
    alice = hub_api("alice")
    spawn_ready(alice, ALICE_GPU, wait_for)
    [job] = active_jobs(slurm, "alice", "jupyter-alice")
    hub_log = factory_home.logfile("jupyterhub")
    seen_from = hub_log.stat().st_size
    unknown = f"Slurm not answering, job {job.job_id} state unknown"
    cluster = LocalCluster()
    from workbench import daemons
    daemons.stop("slurmctld", factory_home.pidfile("slurmctld"))
    started = time.monotonic()
    try:
        def polled_in_the_outage():
            assert (server(alice) or {}).get("ready"), "the session was dropped"
            with hub_log.open("rb") as f:
                f.seek(seen_from)
                return unknown in f.read().decode(errors="replace")
        # one poll every 15 s reads a squeue snapshot of at most 10 s (hubconfig.py)
        wait_for(polled_in_the_outage, "the hub's poll finds Slurm not answering", timeout=60)
        outage = time.monotonic() - started
    finally:
        cluster.start_slurmctld()
    grace = SlurmGPUSpawner(config=hub_config()).unknown_grace
    assert outage < grace, f"the outage ({outage:.0f} s) outlasted unknown_grace ({grace} s)"
    assert (server(alice) or {}).get("ready"), "the session was dropped"
    assert alice.get(f"{hub_url}user/alice/api/status").status_code == 200
    wait_for(lambda: [j.job_id for j in active_jobs(slurm, "alice", "jupyter-alice")] == [
        job.job_id], "the same job still runs")
    # the controller is back with the job running, which the next poll reads the same way
    assert (server(alice) or {}).get("ready")


def progress_events(api, seconds):
    """The spawn page's event stream for ``seconds``."""
    events = []
    deadline = time.monotonic() + seconds
    with api.get(f"{api.base}/users/{api.user}/server/progress", stream=True,
                 timeout=seconds + 10) as r:
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                events.append(json.loads(line[5:]))
                if any("expects it to start" in e.get("message", "") for e in events):
                    break
            if time.monotonic() > deadline:
                break
    return events


def test_a_pending_spawn_shows_reason_position_estimate_and_advice(slurm, hub_api, wait_for):
    alice = hub_api("alice")
    blocker = block_a100(slurm, minutes=10)
    try:
        r = alice.post(f"{alice.base}/users/alice/server", json={"user_options": {
            **ALICE_GPU, "partition": "gpu-a100", "gpu_type": "a100"}})
        assert r.status_code in (201, 202), r.text
        events = progress_events(alice, 45)
        messages = [e["message"] for e in events]
        waiting = [m for m in messages if "is waiting in partition gpu-a100" in m]
        assert waiting, messages
        last = waiting[-1]
        assert "Position 1 of 1 waiting there." in last, last
        assert "waiting for the GPUs" in last, last
        assert "Slurm expects it to start around" in last, last
        assert "To start sooner: partition gpu has" in last and "idle h100 GPUs" in last, last
    finally:
        slurm.run(queries.cancel(blocker))


def test_an_orphan_job_is_cancelled_and_owned_ones_are_not(slurm, hub_api, wait_for):
    import socket
    alice, admin = hub_api("alice"), hub_api("admin")
    spawn_ready(alice, ALICE_GPU, wait_for)
    [owned] = active_jobs(slurm, "alice", "jupyter-alice")
    tag = f"workbench:hub={socket.gethostname()}:user=alice:server=lost"
    orphan = sbatch(slurm, "alice", "-A", "startup-helios", "-p", "cpu", "-t", "5",
                    "-J", "jupyter-alice-lost", f"--comment={tag}",
                    script="#!/bin/bash\nsleep 300\n")
    env = {**os.environ, "JUPYTERHUB_API_URL": admin.base,
           "JUPYTERHUB_API_TOKEN": admin.headers["Authorization"].split()[1]}
    out = subprocess.run([WORKBENCH, "reconcile", "--once", "--min-age", "0"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert f"{orphan} alice/lost" in out, out
    gone = wait_for(lambda: next((j for j in slurm.run(queries.jobs()) if j.job_id == orphan
                                  and not j.state.is_active), None), "the orphan cancelled")
    assert gone.state.value == "CANCELLED"
    assert [j.job_id for j in active_jobs(slurm, "alice", "jupyter-alice")] == [owned.job_id]
    records = json.loads(subprocess.run([WORKBENCH, "audit", "--json"], capture_output=True,
                                        text=True, check=True).stdout)
    assert any(r["action"] == "session.orphan-cancelled" and r["details"]["job_id"] == orphan
               for r in records)


def deployed_idle_culler(factory_home):
    """The idle culler's service as the hub's configuration makes it, checked against the
    command line of the one ``workbench up`` runs."""
    site = hubconfig.Site.from_env()
    [service] = [s for s in site.services() if s.name == "idle-culler"]
    pid = daemons.read_pid(factory_home.pidfile("idle-culler"))
    running = [a.decode() for a in
               Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")]
    # the same interpreter (python or python3 of the venv) with the same arguments
    assert Path(running[0]).resolve() == Path(service.argv[0]).resolve(), running
    assert running[1:] == list(service.argv[1:]), "the deployed idle culler does not run " \
        f"as the hub's configuration says: {running}"
    return site, service


def test_the_idle_culler_cancels_the_culled_servers_job(slurm, hub_api, wait_for,
                                                        factory_home):
    site, service = deployed_idle_culler(factory_home)
    timeouts = [i for i, a in enumerate(service.argv) if a.startswith("--timeout=")]
    assert [service.argv[i] for i in timeouts] == [f"--timeout={site.cull_timeout}"]
    assert f"--url={site.hub_api_url}" in service.argv
    # the deployed command and token, its timeout lowered from site.cull_timeout to 2 s
    # (it culls once at start, then every cull_every)
    argv = list(service.argv)
    argv[timeouts[0]] = "--timeout=2"
    alice = hub_api("alice")
    spawn_ready(alice, ALICE_GPU, wait_for)
    [job] = active_jobs(slurm, "alice", "jupyter-alice")
    time.sleep(4)
    culler = subprocess.Popen(argv, env=services.process_env(service, site, dict(os.environ)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: server(alice) is None, "alice's idle server culled", timeout=60)
    finally:
        culler.terminate()
        culler.wait(10)
    ended = wait_for(lambda: next((j for j in slurm.run(queries.jobs())
                                   if j.job_id == job.job_id and not j.state.is_active), None),
                     "the culled server's job ended")
    assert ended.state.value == "CANCELLED"
