"""torch_run from a real session: world size 4 over 2 nodes, errors and interrupts.

The local cluster's GPUs are fake device files, so torch runs with gloo here (the NCCL branch
needs a real CUDA GPU). The run uses partition `cpu` (two nodes) so that other engineers'
jobs holding the h100s cannot stall it; the launcher, the ranks and the all-reduce are the
same in every partition.
"""

import signal
import textwrap
import time

import pytest

from tests.scaling_session import IDA_SESSION, open_session
from workbench.slurm import JobState, queries
from workbench.tags import parse_job_tag

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

SESSION = IDA_SESSION


@pytest.fixture(scope="module")
def ida(hub_url, demo_password, slurm):
    with open_session(hub_url, demo_password, slurm, "ida", SESSION) as session:
        yield session


ALLREDUCE = """
import json
from workbench.scaling.torchrun import torch_submit

def allreduce():
    import os
    import torch
    import torch.distributed as dist
    t = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(t)
    where = [None] * dist.get_world_size()
    dist.all_gather_object(where, (os.environ["SLURMD_NODENAME"], os.environ["SLURM_JOB_ID"],
                                   "JUPYTERHUB_API_TOKEN" in os.environ))
    return {"sum": t.item(), "world": dist.get_world_size(), "backend": dist.get_backend(),
            "where": where}

run = torch_submit(allreduce, nodes=2, tasks_per_node=2, partition="cpu", memory="2G",
                   runtime="00:05:00", account="industry-autotwin")
print(json.dumps({"job": run.job_id}), flush=True)
print(json.dumps(run.result()))
"""


def test_world_size_4_over_2_nodes_all_reduces(ida, slurm, wait_for):
    out = ida.run(textwrap.dedent(ALLREDUCE), timeout=240)
    assert out["sum"] == 1 + 2 + 3 + 4 and out["world"] == 4
    assert out["backend"] == "gloo"  # no CUDA here; NCCL is chosen where CUDA is available
    nodes = {n for n, _, _ in out["where"]}
    assert len(nodes) == 2, out["where"]
    assert len({j for _, j, _ in out["where"]}) == 1  # one job for the whole run
    assert not any(token for _, _, token in out["where"])
    job_id = int(out["where"][0][1])
    wait_for(lambda: (slurm.run(queries.job_end(job_id)) or [None])[0] == JobState.COMPLETED,
             f"job {job_id} COMPLETED in accounting", 60)
    assert not ida.worker_jobs()


RAISES = """
import json
from workbench.scaling.torchrun import TorchRunError, torch_run

def train():
    import torch.distributed as dist
    if dist.get_rank() == 1:
        raise ValueError("bad batch on rank 1")
    dist.barrier()
    return "unreachable"

try:
    torch_run(train, nodes=2, tasks_per_node=1, partition="cpu", memory="1G",
              runtime="00:05:00", account="industry-autotwin", verbose=False)
    print(json.dumps({"raised": None}))
except TorchRunError as e:
    print(json.dumps({"raised": str(e), "rank": e.rank, "job": e.job_id, "log": e.log}))
"""


def test_a_rank_that_raises_is_a_typed_error_naming_it(ida, wait_for):
    out = ida.run(textwrap.dedent(RAISES), timeout=240)
    assert out["rank"] == 1 and "ValueError: bad batch on rank 1" in out["raised"]
    assert out["raised"].startswith(f"rank 1 of torch run job {out['job']} raised")
    wait_for(lambda: not ida.worker_jobs(), "no job left after the failed run", 60)


SLEEPER = """
import json, time
from workbench.scaling.torchrun import torch_run

def train():
    time.sleep(600)

print(json.dumps({"phase": "submitting"}), flush=True)
torch_run(train, nodes=1, tasks_per_node=1, partition="cpu", memory="1G",
          runtime="00:15:00", account="industry-autotwin")
"""


def test_a_kernel_interrupt_cancels_the_run(ida, slurm, wait_for):
    run = ida.interact(textwrap.dedent(SLEEPER))
    try:
        run.read(60)
        job = wait_for(lambda: next((j for j in ida.worker_jobs() if j.state.is_running),
                                    None), "the torch run running", 120)
        assert parse_job_tag(job.comment)["session"] == str(ida.job_id)
        assert (job.user, job.account) == ("ida", "industry-autotwin")
        time.sleep(1)
        run.proc.send_signal(signal.SIGINT)  # what JupyterLab's "interrupt kernel" sends
        run.proc.wait(timeout=60)
        wait_for(lambda: not ida.worker_jobs(), "the run cancelled", 60)
        wait_for(lambda: (slurm.run(queries.job_end(job.job_id)) or [None])[0]
                 == JobState.CANCELLED, f"job {job.job_id} CANCELLED in accounting", 60)
    finally:
        run.close()


PANEL = """
import json, time
import aifactory as af

def world():
    import torch.distributed as dist
    return dist.get_world_size()

scaler = af.ClusterScaler(pools=[af.WorkerPool("torch", "cpu", cpus=1, memory="1G",
                                               runtime="00:05:00")],
                          counts={"torch": 2}, function=world, refresh_s=0.5)
scaler.engine = "torch"
scaler.run_button.click()
deadline = time.monotonic() + 180
while scaler.result is None and time.monotonic() < deadline:
    time.sleep(0.5)
print(json.dumps({"result": scaler.result, "status": scaler.status, "jobs": scaler.job_ids,
                  "logs": scaler.logs.value}))
scaler.close()
"""


def test_the_panel_runs_a_function_on_two_nodes(ida):
    out = ida.run(textwrap.dedent(PANEL), timeout=240)
    assert out["result"] == 2, out["status"]
    assert out["status"].startswith(f"Torch run job {out['jobs'][0]} finished")
    assert "rank 0" in out["logs"] and "rank 1/2" in out["logs"]  # per-rank logs shown
