"""Dask workers across partitions, from a real session, on the real cluster.

A session of ida's is started through the hub; the code below runs as ida in that session's
environment (what a notebook kernel is) and builds one Dask cluster with CPU workers in `cpu`
and a GPU worker in a GPU partition. The test watches Slurm from outside and counts only the
worker jobs tagged with this session.
"""

import json
import shutil
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import QUEUE_TIMEOUT
from tests.scaling_session import IDA_SESSION, gpu_partition, open_session
from workbench.tags import parse_job_tag

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

SESSION = IDA_SESSION


@pytest.fixture(scope="module")
def ida(hub_url, demo_password, slurm):
    with open_session(hub_url, demo_password, slurm, "ida", SESSION) as session:
        yield session


DASK_CODE = """
import json, os, sys, time
from distributed import Client
from workbench.scaling.cluster import PoolCluster
from workbench.scaling.pools import WorkerPool

def say(**kw):
    print(json.dumps(kw), flush=True)

def env():
    import os
    return {{"job": os.environ.get("SLURM_JOB_ID"),
            "partition": os.environ.get("SLURM_JOB_PARTITION"),
            "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "token": "JUPYTERHUB_API_TOKEN" in os.environ}}

cluster = PoolCluster([WorkerPool("cpu", "cpu", cpus=1, memory="1G", runtime="00:10:00"),
                       WorkerPool("gpu", {gpu!r}, gpus=1, cpus=1, memory="1G",
                                  runtime="00:10:00")],
                      account="industry-autotwin", death_timeout=20)
cluster.scale({{"cpu": 2, "gpu": 1}})
client = Client(cluster)
client.wait_for_workers(3, timeout={timeout})
total = client.submit(sum, client.map(lambda x: x * x, range(100))).result()
on_gpu = client.gather([client.submit(env, resources={{"GPU": 1}}, pure=False)
                        for _ in range(4)])
say(phase="up", total=total, on_gpu=on_gpu, workers=list(client.run(env).values()),
    jobs=cluster.job_ids(), dashboard=cluster.dashboard_link)
sys.stdin.readline()
cluster.scale(1, pool="cpu")
deadline = time.monotonic() + 60
while len(client.scheduler_info()["workers"]) != 2 and time.monotonic() < deadline:
    time.sleep(0.2)
say(phase="scaled-down", jobs=cluster.job_ids(), workers=len(client.scheduler_info()["workers"]))
sys.stdin.readline()
client.close()
cluster.close()
say(phase="closed")
"""


def test_workers_on_cpu_and_gpu_compute_and_gpu_tasks_land_on_gpu_workers(ida, slurm, hub_url,
                                                                          wait_for):
    gpu = gpu_partition(slurm)
    run = ida.interact(textwrap.dedent(DASK_CODE.format(gpu=gpu, timeout=QUEUE_TIMEOUT)))
    try:
        up = run.read(QUEUE_TIMEOUT + 30)
        assert up["total"] == sum(x * x for x in range(100))
        jobs = up["jobs"]
        assert sorted(jobs) == ["cpu-0", "cpu-1", "gpu-0"]
        # every GPU task ran in the GPU worker's job, which got a GPU from Slurm
        assert {t["job"] for t in up["on_gpu"]} == {str(jobs["gpu-0"])}
        assert all(t["partition"] == gpu and t["gpus"] for t in up["on_gpu"])
        # the workers are ida's own jobs, tagged with this session, charged to the project,
        # and none holds the session's hub token
        live = {j.job_id: j for j in ida.worker_jobs()}
        assert set(live) == set(jobs.values())
        for name, job_id in jobs.items():
            job = live[job_id]
            assert (job.user, job.account) == ("ida", "industry-autotwin")
            assert job.partition == ("cpu" if name.startswith("cpu") else gpu)
            assert parse_job_tag(job.comment)["session"] == str(ida.job_id)
        assert not any(w["token"] for w in up["workers"])
        assert str(ida.job_id) not in {w["job"] for w in up["workers"]}
        # the dashboard, through ida's own server (jupyter-server-proxy)
        assert up["dashboard"].startswith("/user/ida/proxy/")
        page = requests.get(hub_url.rstrip("/") + up["dashboard"],
                            headers=ida.api.headers, timeout=30)
        assert page.status_code == 200 and "Dask" in page.text

        # scaling cpu down to 1 cancels exactly cpu-1's job; cpu-0 and gpu-0 run on
        run.go()
        down = run.read(90)
        assert down["workers"] == 2 and sorted(down["jobs"]) == ["cpu-0", "gpu-0"]
        keep = {jobs["cpu-0"], jobs["gpu-0"]}
        wait_for(lambda: {j.job_id for j in ida.worker_jobs()} == keep,
                 f"only jobs {keep} left", 60)
        assert slurm.run(_job_end(jobs["cpu-1"]))  # it ended (accounting knows)

        run.go()
        assert run.read(90)["phase"] == "closed"
        wait_for(lambda: not ida.worker_jobs(), "no worker job left after close()", 60)
    finally:
        run.close()


def _job_end(job_id):
    from workbench.slurm import queries

    return queries.job_end(job_id)


REFUSED_CODE = """
import json
from workbench.scaling.cluster import PoolCluster
from workbench.scaling.pools import ScalingError, WorkerPool
from workbench.scaling.torchrun import torch_run

def attempt(what, fn):
    try:
        fn()
    except ScalingError as e:
        return {{"what": what, "field": e.field, "message": str(e)}}
    return {{"what": what, "field": None, "message": "not refused"}}

out = []
cluster = PoolCluster([WorkerPool("gpu", "gpu", gpus=1, cpus=1, memory="1G",
                                  runtime="01:00:00")],
                      account="industry-autotwin", allocations_file={alloc!r}, security=None)
out.append(attempt("over budget", lambda: cluster.scale(2)))
out.append(attempt("adapt over budget", lambda: cluster.adapt(minimum=0, maximum=2)))
out.append(attempt("torch over budget", lambda: torch_run(
    print, nodes=2, gpus_per_node=1, partition="gpu", runtime="01:00:00",
    account="industry-autotwin", allocations_file={alloc!r})))
out.append(attempt("another user's account", lambda: PoolCluster(
    [WorkerPool("cpu", "cpu")], account="startup-helios")))
out.append(attempt("GPU type the partition lacks", lambda: cluster.define_pool(
    WorkerPool("a100", "gpu", gpus=1, gpu_type="a100"))))
out.append(attempt("walltime over the limit", lambda: cluster.define_pool(
    WorkerPool("long", "gpu", gpus=1, runtime="13:00:00"))))
out.append(attempt("more workers than the partition holds", lambda: cluster.scale(9)))
out.append(attempt("negative count", lambda: cluster.scale(-1)))
out.append(attempt("zero nodes", lambda: torch_run(print, nodes=0, partition="cpu")))
import threading
lock = threading.Lock()
out.append(attempt("unpicklable function", lambda: torch_run(
    lambda: lock, nodes=1, partition="cpu", account="industry-autotwin")))
cluster.close()
print(json.dumps(out))
"""


@pytest.fixture
def readable_dir():
    """A directory the session's user can read (pytest's tmp_path is root's only)."""
    path = Path(tempfile.mkdtemp(prefix="wb-scaling-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_refused_requests_submit_nothing(ida, slurm, readable_dir):
    """Over budget (a copy of the allocations file leaving industry-autotwin 1.5 GPU-hours),
    and the issue's bad inputs: each a ScalingError naming the field, and no job appears."""
    import yaml

    from workbench.allocations import budgets, default_path, load

    used = next(b.used_hours for b in budgets(load(default_path(), check_users=False), slurm)
                if b.project == "industry-autotwin")
    spec = yaml.safe_load(default_path().read_text())
    for programme in spec["programmes"].values():
        for name, project in (programme.get("projects") or {}).items():
            if name == "industry-autotwin":
                project["gpu_hours"] = round(used + 1.5, 2)
    alloc = readable_dir / "allocations.yaml"
    alloc.write_text(yaml.safe_dump(spec))
    alloc.chmod(0o644)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    out = ida.run(textwrap.dedent(REFUSED_CODE.format(alloc=str(alloc))), timeout=120)
    by = {o["what"]: o for o in out}
    assert not [o for o in out if o["field"] is None], json.dumps(out, indent=1)
    assert "project industry-autotwin has 1." in by["over budget"]["message"]  # 1.5 left
    assert "what would fit" in by["over budget"]["message"]
    assert by["torch over budget"]["field"] == "nodes"
    assert by["another user's account"]["field"] == "account"
    assert by["GPU type the partition lacks"]["field"] == "gpu_type"
    assert by["walltime over the limit"]["field"] == "runtime"
    assert "could ever hold" in by["more workers than the partition holds"]["message"]
    assert by["negative count"]["field"] == "count"
    assert by["zero nodes"]["field"] == "nodes"
    assert by["unpicklable function"]["field"] == "fn"
    assert not ida.worker_jobs()
    # nor did any job of ida's reach accounting since (no sbatch at all). sacct -S lists
    # every job active in the window, so earlier tests' workers ending now are filtered out
    # by their submit time.
    import subprocess

    acct = subprocess.run(["sacct", "-n", "-X", "-P", "-u", "ida", "-S", started, "-o",
                           "JobID,JobName,Submit"], capture_output=True, text=True, check=True,
                          env={"SLURM_CONF": slurm.slurm_conf, "PATH": "/usr/bin:/bin"}).stdout
    submitted = [ln.split("|") for ln in acct.splitlines() if ln.count("|") == 2]
    assert not [row for row in submitted if row[2] >= started and
                ("dask" in row[1] or "torch" in row[1])], acct
