"""Spawning notebook servers through the hub's REST API: the spawn options contract."""

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from workbench import daemons
from workbench.demo.hub import LocalHub
from workbench.paths import FactoryHome
from workbench.slurm import queries

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

ALICE_GPU = {"partition": "gpu", "account": "startup-helios", "gpus": 2, "gpu_type": "h100",
             "cpus": 2, "memory": "4G", "runtime": "00:30:00"}


def jobs_of(slurm, user):
    return [j for j in slurm.run(queries.jobs()) if j.user == user]


def server(api):
    return api.get(f"{api.base}/users/{api.user}").json()["servers"].get("")


def test_spawn_on_a_gpu_node_as_alice_and_stop_cancels(slurm, hub_api, hub_url, wait_for):
    api = hub_api("alice")
    before = {j.job_id for j in jobs_of(slurm, "alice")}
    started = time.monotonic()
    r = api.post(f"{api.base}/users/alice/server", json={"user_options": ALICE_GPU})
    assert r.status_code in (201, 202), r.text
    wait_for(lambda: (server(api) or {}).get("ready"), "alice's server ready")
    ready_after = time.monotonic() - started
    print(f"REST spawn to ready: {ready_after:.2f} s")

    # the server answers through the proxy, as alice's
    r = api.get(f"{hub_url}user/alice/api/status")
    assert r.status_code == 200, r.text

    new = [j for j in jobs_of(slurm, "alice") if j.job_id not in before and j.state.is_active]
    assert len(new) == 1, new
    job = new[0]
    assert job.state.is_running and job.partition == "gpu"
    assert job.batch_host in ("h100-1", "h100-2")
    assert (job.gpu_type, job.gpus, job.account) == ("h100", 2, "startup-helios")
    assert job.comment.startswith("workbench:") and "user=alice" in job.comment

    r = api.delete(f"{api.base}/users/alice/server")
    assert r.status_code in (202, 204), r.text
    wait_for(lambda: not server(api), "server gone from the hub")
    gone = wait_for(lambda: next((j for j in slurm.run(queries.jobs())
                                  if j.job_id == job.job_id and not j.state.is_active), None),
                    f"job {job.job_id} ended")
    assert gone.state.value == "CANCELLED"


BAD = {
    "unknown partition": ({"partition": "nope"}, "partition"),
    "someone else's account": ({"account": "research-medai"}, "account"),
    "99 GPUs": ({"gpus": 99}, "gpus"),
    "runtime over the limit": ({"runtime": "13:00:00"}, "runtime"),
    "#SBATCH injected in memory": ({"memory": "4G\n#SBATCH --uid=0"}, "memory"),
    "#SBATCH injected in gpu_type": ({"gpu_type": "h100\n#SBATCH --exclusive"}, "gpu_type"),
    "#SBATCH injected in account": ({"account": "startup-helios\n#SBATCH -A research-medai"},
                                    "account"),
    "unknown field": ({"qos": "high"}, "qos"),
    "GPUs as text": ({"gpus": "2"}, "gpus"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_invalid_options_are_refused_with_400_and_no_job(case, slurm, hub_api, factory_home):
    change, field = BAD[case]
    api = hub_api("alice")
    before = {j.job_id for j in jobs_of(slurm, "alice")}
    r = api.post(f"{api.base}/users/alice/server", json={"user_options": {**ALICE_GPU, **change}})
    assert r.status_code == 400, r.text
    message = r.json()["message"]
    assert message.startswith(f"Invalid {field}:"), message
    assert server(api) is None
    # only a new job counts: one of an earlier test may end (and leave the list) meanwhile
    submitted = {j.job_id for j in jobs_of(slurm, "alice")} - before
    assert not submitted, f"a job was submitted: {sorted(submitted)}"


def test_hub_that_died_is_restarted_by_up_and_keeps_state(slurm, hub_url):
    home = FactoryHome.from_env()
    pid = daemons.read_pid(home.pidfile("jupyterhub-daemon"))
    subprocess.run(["kill", "-9", str(pid)], check=True)
    hub = LocalHub()
    deadline = time.monotonic() + 10
    while hub.is_up() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not hub.is_up()
    subprocess.run([str(Path(sys.executable).parent / "workbench"), "up"], check=True,
                   capture_output=True)
    assert hub.is_up()
    assert requests.get(f"{hub_url}hub/api/").status_code == 200


def _server_token(job_id: int) -> str:
    """The running server's hub token, read (as root) from its process environment."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        env = dict(e.decode(errors="replace").partition("=")[::2] for e in environ if b"=" in e)
        if env.get("SLURM_JOB_ID") == str(job_id) and "JUPYTERHUB_API_TOKEN" in env:
            return env["JUPYTERHUB_API_TOKEN"]
    raise AssertionError(f"no process of job {job_id} holds a hub token")


def test_the_port_callback_takes_a_port_and_nothing_else(slurm, hub_api, hub_url, wait_for,
                                                         factory_home):
    api = hub_api("alice")
    r = api.post(f"{api.base}/users/alice/server", json={"user_options": ALICE_GPU})
    assert r.status_code in (201, 202), r.text
    wait_for(lambda: (server(api) or {}).get("ready"), "alice's server ready")
    [job] = [j for j in jobs_of(slurm, "alice") if j.state.is_running]
    token = _server_token(job.job_id)
    callback = f"{hub_url}hub/api/batchspawner"
    headers = {"Authorization": f"token {token}"}
    for body in ({"port": 1234, "exec_prefix": "touch /tmp/pwned; sudo -E -u {username}"},
                 {"batch_query_cmd": "id"}, {"port": "1234"}, {"port": 0}, {"port": 70000}):
        r = requests.post(callback, json=body, headers=headers)
        assert r.status_code == 400, (body, r.text)
    # a user's own token is no server's token
    r = requests.post(callback, json={"port": 1234}, headers=api.headers)
    assert r.status_code == 403, r.text
    # the server still answers on its real port, and the token is in no log
    assert api.get(f"{hub_url}user/alice/api/status").status_code == 200
    for log in factory_home.log.glob("*.log"):
        assert token not in log.read_text(errors="replace"), log
    assert token not in Path(f"/home/alice/.jupyterhub-slurm-{job.job_id}.log").read_text()


def test_two_extensions_at_once_both_count_and_a_bad_one_changes_nothing(slurm, hub_api,
                                                                         wait_for):
    """Two tabs (or a double click) asking for 30 more minutes each: 10 + 30 + 30."""
    api = hub_api("bob")
    r = api.post(f"{api.base}/users/bob/server", json={"user_options": {
        "partition": "cpu", "account": "research-climate", "gpus": 0, "cpus": 1,
        "memory": "1G", "runtime": "00:10:00"}})
    assert r.status_code in (201, 202), r.text
    wait_for(lambda: (server(api) or {}).get("ready"), "bob's server ready")
    url = f"{api.base}/workbench/walltime/bob"
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: api.post(url, json={"minutes": 30}), range(2)))
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert sorted(a.json()["time_limit_min"] for a in answers) == [40, 70]
    [job] = [j for j in jobs_of(slurm, "bob") if j.state.is_running]
    assert job.time_limit_min == 70
    for bad in ({"minutes": "30"}, {"minutes": 0}, {"minutes": 30, "x": 1}, []):
        r = api.post(url, json=bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["message"], bad
    assert next(j for j in jobs_of(slurm, "bob") if j.job_id == job.job_id).time_limit_min == 70
    assert api.get(url).json()["time_limit_min"] == 70
