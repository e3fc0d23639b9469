"""Users cannot drive controller load: what a user can ask for that needs Slurm (a dataset open
naming a job, a notebook's scaler panels) is answered from a shared snapshot, not one
``squeue`` per request or per panel. The calls are counted from outside, by wrappers of the
real commands (the benchmarks' CallShim), on the real cluster."""

import asyncio
import math
import time

import pytest

from benchmarks._cluster import CallShim
from tests.slurm_jobs import sbatch
from workbench.audit import AuditLog
from workbench.catalogue import demodata, lineage
from workbench.catalogue.policy import LicenceStore, Membership, ProjectInfo
from workbench.catalogue.store import CatalogueStore, Refusal
from workbench.paths import data_file
from workbench.slurm import SlurmClient, queries
from workbench.tags import job_tag

pytestmark = pytest.mark.slurm

MEMBERS = Membership((ProjectInfo("research-medai", "research", ("bob",)),))
#: job ids no cluster here has given (the local cluster's ids are far below)
BOGUS = 900_000_000


@pytest.fixture
def counted(slurm, tmp_path):
    """(shim, a SlurmClient whose every command is counted by the shim)."""
    shim = CallShim(tmp_path / "shim")
    shim.install()
    return shim, SlurmClient(slurm_conf=slurm.slurm_conf, bindir=str(shim.bindir))


async def test_opens_naming_bogus_job_ids_cost_one_squeue_per_recheck_interval(
        counted, slurm, tmp_path, wait_for):
    shim, client = counted
    root = tmp_path / "datasets"
    demodata.generate(root, only=["crop-yields"])
    audit = AuditLog(tmp_path / "audit.sqlite")
    store = CatalogueStore(data_file("cluster", "catalogue.yaml"), root, audit, client,
                           LicenceStore(audit), membership=lambda: MEMBERS, enforce=False)

    async def open_as_bob(job_id, delay=0.0):
        await asyncio.sleep(delay)
        started = time.monotonic()
        try:
            await store.open("bob", "crop-yields", job_id=job_id)
            return 200, time.monotonic() - started
        except Refusal as e:
            assert "is not a running job of bob's" in e.message
            return e.status, time.monotonic() - started

    # 100 at once: the snapshot, and one recheck for all of them
    answers = await asyncio.gather(*(open_as_bob(BOGUS + i) for i in range(100)))
    assert {code for code, _ in answers} == {400}
    assert shim.calls(0, float("inf")) == {"squeue": 2}
    # 100 more spread over 3 s: at most one squeue per RECHECK_INTERVAL, each answered
    # within it (and the squeue's own time)
    since = time.time()
    started = time.monotonic()
    answers = await asyncio.gather(*(open_as_bob(BOGUS + i, i * 0.03) for i in range(100)))
    took = time.monotonic() - started
    assert {code for code, _ in answers} == {400}
    assert max(t for _, t in answers) < lineage.RECHECK_INTERVAL + 1.0
    calls = shim.calls(since, float("inf"))
    assert set(calls) == {"squeue"}
    assert calls["squeue"] <= math.ceil(took / lineage.RECHECK_INTERVAL) + 1, (calls, took)
    # bob's real job, started after the snapshot: found by the next recheck
    job_id = sbatch(slurm, "bob", "-p", "cpu", "-A", "research-medai", "-c", "1",
                    "--mem=256M", "-t", "2", script="#!/bin/bash\nsleep 60\n")
    try:
        wait_for(lambda: any(j.job_id == job_id and j.state.is_running
                             for j in slurm.run(queries.jobs())), f"job {job_id} running")
        code, _ = await open_as_bob(job_id)
        assert code == 200
        assert any(r.details.get("job_id") == job_id
                   and r.details.get("project") == "research-medai"
                   for r in audit.records(lineage.OPENED, actor="bob", limit=None))
        # the next open of that job is answered from the snapshot: no squeue at all
        before = shim.calls(0, float("inf"))["squeue"]
        assert (await open_as_bob(job_id))[0] == 200
        assert shim.calls(0, float("inf"))["squeue"] == before
    finally:
        slurm.run(queries.cancel(job_id))
        await asyncio.gather(*store._tasks)  # the AdminComment writes of the opens


def _panels(n, session, cluster, seconds):
    from extensions.widgets.scaler import ClusterScaler

    panels = [ClusterScaler(cluster=cluster, session=session) for _ in range(n)]
    opened = time.time()
    time.sleep(seconds)
    closed = time.time()
    for p in panels:
        p.close()
    return opened, closed


def test_five_scaler_panels_cost_the_squeue_of_one(counted, tmp_path, monkeypatch):
    """Each panel redraws every 3 s (its default); the kernel's one snapshot asks squeue at
    most once per SESSION_PERIOD, however many panels are open."""
    from workbench.scaling.cluster import PoolCluster
    from workbench.scaling.pools import WorkerPool
    from workbench.scaling.session import SESSION_PERIOD, Session

    shim, client = counted
    monkeypatch.setenv("HOME", str(tmp_path))
    session = Session("ida", 1, "cpu-1", "127.0.0.1", job_tag("loadtest", "ida", ""),
                      "/user/ida/", client)
    cluster = PoolCluster([WorkerPool("cpu", "cpu", cpus=1, memory="1G")], "industry-autotwin",
                          session=session, security=None)
    try:
        seconds = 10
        one = shim.calls(*_panels(1, session, cluster, seconds))["squeue"]
        five = shim.calls(*_panels(5, session, cluster, seconds))["squeue"]
    finally:
        cluster.close()
    bound = math.ceil(seconds / SESSION_PERIOD)
    assert 1 <= one <= bound and 1 <= five <= bound, (one, five)
    assert five <= one + 1, (one, five)
