"""Nothing runs on after its session: a killed kernel's workers end when the session is
stopped (the spawner) or when the reconciler finds their session gone.

Each test starts its own session of ida's, starts worker jobs from its kernel and kills the
kernel's process with SIGKILL. Dask workers end by themselves when their scheduler (in the
kernel) goes; a torch run is a batch job that would run on, so the spawner and the
reconciler are tested with one.
"""

import socket
import textwrap

import pytest

from tests.conftest import QUEUE_TIMEOUT
from tests.scaling_session import IDA_SESSION, open_session
from workbench.audit import AuditLog
from workbench.hubapi import HubClient
from workbench.paths import FactoryHome
from workbench.reconcile import reconcile_once
from workbench.slurm import JobState, queries

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

SESSION = {**IDA_SESSION, "runtime": "00:20:00"}

KERNEL = """
import json, time
from distributed import Client
from workbench.scaling.cluster import PoolCluster
from workbench.scaling.pools import WorkerPool

cluster = PoolCluster([WorkerPool("cpu", "cpu", cpus=1, memory="1G", runtime="00:10:00")],
                      account="industry-autotwin", death_timeout={death_timeout})
cluster.scale(1)
client = Client(cluster)
client.wait_for_workers(1, timeout={timeout})
print(json.dumps({{"jobs": cluster.job_ids()}}), flush=True)
time.sleep(3600)
"""


TORCH_KERNEL = """
import json, time
from workbench.scaling.torchrun import torch_submit

def train():
    time.sleep(900)

run = torch_submit(train, nodes=1, partition="cpu", memory="1G", runtime="00:20:00",
                   account="industry-autotwin")
print(json.dumps({"jobs": {"run": int(run.job_id)}}), flush=True)
time.sleep(3600)
"""


def start_workers(session, code=TORCH_KERNEL, death_timeout=None):
    kernel = session.interact(textwrap.dedent(code.format(timeout=QUEUE_TIMEOUT,
                                                          death_timeout=death_timeout)
                                              if death_timeout else code))
    jobs = set(kernel.read(QUEUE_TIMEOUT + 30)["jobs"].values())
    assert {j.job_id for j in session.worker_jobs()} == jobs
    kernel.kill()
    return kernel, jobs


def test_stopping_the_session_cancels_a_killed_kernels_workers(hub_url, demo_password, slurm,
                                                                 wait_for):
    with open_session(hub_url, demo_password, slurm, "ida", SESSION) as session:
        kernel, jobs = start_workers(session)
        try:
            # the kernel is gone; its torch run still runs
            assert {j.job_id for j in session.worker_jobs()} == jobs
            session.stop()  # the hub's Stop My Server: SlurmGPUSpawner.stop()
            wait_for(lambda: not session.worker_jobs(), "the workers cancelled with the "
                     "session", 30)
            for job_id in jobs:
                wait_for(lambda j=job_id: (slurm.run(queries.job_end(j)) or [None])[0]
                         == JobState.CANCELLED, f"job {job_id} CANCELLED in accounting", 60)
            records = AuditLog(FactoryHome.from_env().audit_db).records(
                "session.workers-cancelled", actor="ida", limit=20)
            assert any(set(r.details.get("workers", [])) == jobs for r in records)
        finally:
            kernel.close()


def test_the_reconciler_cancels_workers_whose_session_ended(hub_url, demo_password, slurm,
                                                            hub_api, wait_for):
    admin = hub_api("admin")
    with open_session(hub_url, demo_password, slurm, "ida", SESSION) as session:
        kernel, jobs = start_workers(session)
        try:
            # the session job ends behind the hub's back (walltime, node failure, scancel)
            slurm.run(queries.cancel(session.job_id, as_user="ida"))
            wait_for(lambda: not any(j.job_id == session.job_id and j.state.is_active
                                     for j in slurm.run(queries.jobs())),
                     "the session job ended", 60)
            assert {j.job_id for j in session.worker_jobs()} == jobs  # orphaned workers
            hub = HubClient(f"{hub_url}hub/api", admin.headers["Authorization"].split()[1])
            cancelled = reconcile_once(slurm, hub, socket.gethostname())
            mine = [o for o in cancelled if o.session == session.job_id]
            assert {o.job.job_id for o in mine} == jobs and all(o.is_worker for o in mine)
            wait_for(lambda: not session.worker_jobs(), "no worker job left", 30)
        finally:
            kernel.close()


def test_a_killed_kernels_dask_workers_end_by_themselves(hub_url, demo_password, slurm,
                                                         wait_for):
    """The session lives on; the workers lose their scheduler and their jobs end (at once
    when the connection breaks, else after ``death_timeout``)."""
    with open_session(hub_url, demo_password, slurm, "ida", SESSION) as session:
        kernel, jobs = start_workers(session, KERNEL, death_timeout=15)
        try:
            wait_for(lambda: not session.worker_jobs(), "the Dask workers gone after their "
                     "scheduler died with the kernel", 90)
            assert session.session_job().job_id == session.job_id  # the session still runs
        finally:
            kernel.close()
