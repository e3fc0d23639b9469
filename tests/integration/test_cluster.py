"""The local Slurm cluster, through the workbench's Slurm layer (real daemons, real jobs)."""

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.slurm_jobs import sbatch
from workbench.demo.cluster.local import LocalCluster
from workbench.resources import ClusterView
from workbench.slurm import JobState, Query, SlurmClient, SlurmError, queries
from workbench.slurm.snapshot import PartitionSnapshot

pytestmark = pytest.mark.slurm

WORKBENCH = str(Path(sys.executable).parent / "workbench")


def test_shape_of_the_cluster(slurm):
    nodes = {n.name: n for n in slurm.run(queries.nodes())}
    assert all(n.ready for n in nodes.values()), nodes
    by_part = {}
    for n in nodes.values():
        for p in n.partitions:
            by_part.setdefault(p, []).append(n)
    assert sorted((n.gpu_type, n.gpus) for n in by_part["gpu"]) == [("h100", 4), ("h100", 4)]
    assert [(n.gpu_type, n.gpus) for n in by_part["gpu-a100"]] == [("a100", 4)]
    assert [n.gpus for n in by_part["cpu"]] == [0, 0]
    parts = {p.name: p for p in slurm.run(queries.partitions())}
    assert parts["cpu"].default and not parts["gpu"].default


def test_users_belong_to_their_projects(slurm):
    accounts = lambda user: {a.account for a in slurm.run(queries.associations(user))}  # noqa: E731
    assert accounts("alice") == {"startup-helios"}
    assert accounts("bob") == {"research-medai", "research-climate"}
    # the controller's association cache (what the spawner validates with) agrees with slurmdbd
    for user in ("alice", "bob", "sam", "nosuchuser"):
        cached = {(a.account, a.user) for a in slurm.run(queries.user_accounts(user))}
        assert cached == {(a.account, user) for a in slurm.run(queries.associations(user))}
    rows = slurm.run(queries.sacctmgr_list("account", "Account", "Organization"))
    parents = {r[0]: r[1] for r in rows}
    assert parents["startup-helios"] == "startups"
    assert parents["research-medai"] == "research"


def test_a_gpu_job_as_the_user_sees_its_gpus(slurm, wait_for, tmp_path):
    out = Path("/tmp") / f"wb-test-gpu-{os.getpid()}.out"
    script = ("#!/bin/bash\n#SBATCH -p gpu -A startup-helios --gres=gpu:h100:2 -t 5 --mem=1G\n"
              f"#SBATCH -o {out}\n"
              "echo user=$(id -un) job=$SLURM_JOB_ID cuda=$CUDA_VISIBLE_DEVICES\n")
    job_id = slurm.run(queries.submit(script, as_user="alice"))
    job = wait_for(lambda: next((j for j in slurm.run(queries.jobs()) if j.job_id == job_id
                                 and j.state.is_finished), None), f"job {job_id} finished")
    assert job.state is JobState.COMPLETED
    assert job.user == "alice" and job.partition == "gpu"
    assert (job.gpu_type, job.gpus) == ("h100", 2)
    text = wait_for(lambda: out.exists() and out.read_text(), "job output")
    assert f"user=alice job={job_id} cuda=0,1" in text
    out.unlink()


def test_a_job_cannot_be_submitted_for_someone_elses_project(slurm):
    with pytest.raises(SlurmError, match="Invalid account"):
        sbatch(slurm, "alice", "-A", "research-medai", "-p", "cpu",
               script="#!/bin/bash\nsleep 1\n")


def test_cluster_view_from_the_live_cluster(slurm):
    view = ClusterView.build(slurm.run(queries.nodes()), slurm.run(queries.partitions()),
                             slurm.run(queries.user_accounts("bob")), "bob")
    assert view.accounts == ("research-climate", "research-medai")
    assert view.partitions["gpu"].gpus_per_node == 4
    assert view.partitions["gpu"].max_time_min == 720


def test_status_json(slurm):
    out = subprocess.run([WORKBENCH, "status", "--json"], capture_output=True, text=True,
                         check=True)
    st = json.loads(out.stdout)
    assert st["hub_url"].startswith("http://")
    assert Path(st["slurm_conf"]).is_file()
    assert st["demo_password"]
    assert {n["name"]: n["state"] for n in st["nodes"]}.keys() == {
        "h100-1", "h100-2", "a100-1", "cpu-1", "cpu-2"}
    assert all(st["daemons"].values())
    mode = LocalCluster().home.demo_password_file.stat().st_mode
    assert mode & 0o077 == 0


def test_no_process_has_the_database_password_in_its_argv(slurm):
    """While slurmdbd's database user is (re)set up, a scanner reads every process's
    /proc/PID/cmdline (readable by every user): it sees the MariaDB client run and never the
    password, nor does any daemon of the running factory carry it."""
    cluster = LocalCluster()
    password = (cluster.home.secrets / "db_password").read_text().strip().encode()
    seen: list[bytes] = []
    done = threading.Event()

    def scan():
        while not done.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    text = cmdline.read_bytes().replace(b"\0", b" ")
                except OSError:
                    continue
                if text.startswith(b"mariadb ") or password in text:
                    seen.append(text)

    scanner = threading.Thread(target=scan)
    scanner.start()
    try:
        for _ in range(20):
            cluster.grant_slurmdbd()
    finally:
        done.set()
        scanner.join()
    assert any(b"--socket=" in s for s in seen), "the scanner never saw the client run"
    assert not [s for s in seen if password in s]
    r = subprocess.run(["mysql", "-h127.0.0.1", f"-P{cluster.ports.mariadb}", "-uslurm",
                        "slurm_acct_db", "-Ne", "SELECT 1"], input="", capture_output=True,
                       text=True, env={**os.environ, "MYSQL_PWD": password.decode()})
    assert r.stdout.strip() == "1", r.stderr  # the user still logs in with its password


def test_up_again_changes_nothing_and_is_quick(slurm):
    out = subprocess.run([WORKBENCH, "up"], capture_output=True, text=True, check=True)
    assert "added" not in out.stdout and "Created" not in out.stdout
    assert "The local AI Factory is up" in out.stdout


def test_up_puts_back_a_changed_slurm_conf_and_the_controller_reads_it(slurm):
    conf = LocalCluster().home.slurm_conf
    original = conf.read_text()
    config = Query("scontrol", ("show", "config"), str)
    try:
        conf.write_text(original.replace("batch_sched_delay=0", "batch_sched_delay=2"))
        slurm.run(queries.reconfigure())
        assert "batch_sched_delay=2" in slurm.run(config)
        subprocess.run([WORKBENCH, "up"], check=True, capture_output=True)
        assert conf.read_text() == original
        assert "batch_sched_delay=0" in slurm.run(config)  # no restart needed
    finally:
        if conf.read_text() != original:
            conf.write_text(original)
            slurm.run(queries.reconfigure())


async def test_many_readers_of_the_partitions_share_one_scontrol(slurm, tmp_path):
    """What the walltime API does for every session's JupyterLab every 30 s. The calls are
    counted from outside, by wrappers of the real commands (the benchmarks' CallShim)."""
    from benchmarks._cluster import CallShim
    shim = CallShim(tmp_path)
    shim.install()
    counted = SlurmClient(slurm_conf=slurm.slurm_conf, bindir=str(shim.bindir))
    snap = PartitionSnapshot(counted, max_age=60)
    results = await asyncio.gather(*(snap.get() for _ in range(50)))
    assert shim.calls(0, float("inf")) == {"scontrol": 1}
    assert results[0] == {p.name: p for p in slurm.run(queries.partitions())}
    assert all(r is results[0] for r in results)
    await snap.get(0)  # an extension reads fresh
    assert shim.calls(0, float("inf")) == {"scontrol": 2}
