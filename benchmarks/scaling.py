"""Scaling benchmarks, each against its baseline in the same run (see benchmarks/README.md).

1. From "scale to 8 workers" to 8 Dask workers connected: through ``af.ClusterScaler`` (the
   Scale button: builds the PoolCluster, checks the request, scales) against dask-jobqueue's
   ``SLURMCluster.scale(8)`` used directly with the same worker options (partition, CPUs,
   memory, walltime, account, TLS). Goal: at most 1.1x.
2. ``af.torch_run`` on 2 nodes, time to result, against the same training launched by a
   hand-written ``sbatch`` script with ``srun torchrun`` (polled the same way). Goal: 1.1x.
3. DDP on 2 nodes vs 1 on the same total work (gloo): speed-up, and where the time goes.

Run as root with the local AI Factory up: it starts a session of ``--user`` (default ida)
through the hub, then runs the measurements *as that user inside the session's environment*
(what a notebook kernel is), and stops the session at the end. Workers go to partition
``cpu`` (the local cluster's GPUs are fake devices and usually held by others' tests; the
code path is the same). ``--reps`` runs each measurement that many times, alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = {"partition": "cpu", "cpus": 1, "memory": "1G", "runtime": "00:15:00"}


# -- the training both launchers run --------------------------------------------------------

def train(total_samples: int, steps: int, batch: int):
    """A small MLP, DDP, ``steps`` steps over ``total_samples`` split between the ranks (the
    same total work on any number of ranks). Returns the timings of rank 0."""
    import time

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    entered = time.time()
    torch.set_num_threads(1)
    rank, world = dist.get_rank(), dist.get_world_size()
    g = torch.Generator().manual_seed(rank)
    n = total_samples // world
    x = torch.randn(n, 64, generator=g)
    y = x[:, :1] * 3 - x[:, 1:2]
    model = DDP(torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                                    torch.nn.Linear(256, 256), torch.nn.ReLU(),
                                    torch.nn.Linear(256, 1)))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    local_batch = max(batch // world, 1)
    t0 = time.time()
    for step in range(steps):
        i = (step * local_batch) % max(n - local_batch, 1)
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x[i:i + local_batch]), y[i:i + local_batch])
        loss.backward()                       # DDP all-reduces the gradients here
        opt.step()
    trained = time.time()
    # the communication alone: the same gradient volume, all-reduced ``steps`` times
    grads = [p.grad for p in model.parameters()]
    for _ in range(steps):
        for gr in grads:
            dist.all_reduce(gr)
    comm = time.time() - trained
    return {"entered": entered, "train_s": trained - t0, "comm_probe_s": comm,
            "setup_s": t0 - entered, "exited": time.time(), "world": world,
            "loss": float(loss), "backend": dist.get_backend()}


TRAIN_ARGS = (200_000, 60, 4000)  # samples, steps, global batch


# -- measurements (as the user, in the session) -----------------------------------------------

def scale_via_panel(n: int, account: str) -> float:
    import aifactory as af

    scaler = af.ClusterScaler(pools=[af.WorkerPool("cpu", **WORKER)], counts={"cpu": n},
                              account=account, refresh_s=3600)
    client = scaler.client  # the baseline's client exists before its clock starts too
    try:
        t0 = time.perf_counter()
        scaler.scale_button.click()                    # what the user presses
        if scaler.status.startswith("Invalid"):
            raise RuntimeError(scaler.status)
        client.wait_for_workers(n, timeout=600)
        return time.perf_counter() - t0
    finally:
        scaler.close()


def scale_stock(n: int, account: str) -> float:
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    from workbench.scaling.session import Session, submission_env

    session = Session.current()
    tls = Path.home() / ".aifactory" / "dask-tls"
    cluster = SLURMCluster(queue="cpu", account=account, cores=WORKER["cpus"], processes=1,
                           memory="1024MiB", job_mem="1024M", walltime=WORKER["runtime"],
                           job_extra_directives=[f"--comment={session.worker_tag}"],
                           python=sys.executable, security=True,
                           shared_temp_directory=str(tls),
                           log_directory=str(Path.home() / ".aifactory" / "dask-logs"),
                           scheduler_options={"host": session.address,
                                              "dashboard_address": "127.0.0.1:0"})
    client = Client(cluster)
    # the same clean environment for sbatch (the session's SLURM_* would break the job)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(submission_env(saved))
    try:
        t0 = time.perf_counter()
        cluster.scale(n)
        client.wait_for_workers(n, timeout=600)
        return time.perf_counter() - t0
    finally:
        os.environ.clear()
        os.environ.update(saved)
        client.close()
        cluster.close()


def torch_via_af(nodes: int, account: str) -> dict:
    import aifactory as af

    t0 = time.time()
    out = af.torch_run(train, *TRAIN_ARGS, nodes=nodes, tasks_per_node=1, partition="cpu",
                       memory="2G", runtime="00:10:00", account=account, verbose=False)
    return {**out, "submitted": t0, "result_at": time.time()}


SBATCH = """#!/bin/bash
#SBATCH --job-name=torchrun-bench
#SBATCH --partition=cpu
#SBATCH --account={account}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=2G
#SBATCH --time=00:10:00
#SBATCH --comment={tag}
#SBATCH --output={out}.log
export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK
first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
master=$(scontrol show node "$first" | sed -n 's/.*NodeAddr=\\([^ ]*\\).*/\\1/p')
port=$((20000 + SLURM_JOB_ID % 10000))
srun bash -c 'exec {python} -m torch.distributed.run --nnodes={nodes} --nproc-per-node=1 \\
  --node-rank=$SLURM_NODEID --master-addr='"$master"' --master-port='"$port"' \\
  {script} --torchrun-worker {out}'
"""


def torch_via_sbatch(nodes: int, account: str, workdir: Path) -> dict:
    from workbench.scaling.session import Session, submission_env
    from workbench.slurm import queries

    session = Session.current()
    out = workdir / f"torchrun-{time.time_ns()}"
    script = SBATCH.format(account=account, nodes=nodes, tag=session.worker_tag, out=out,
                           python=sys.executable, script=Path(__file__).resolve())
    t0 = time.time()
    job = subprocess.run(["sbatch", "--parsable"], input=script, text=True, check=True,
                         capture_output=True, env=submission_env(os.environ)).stdout.strip()
    delay = 0.2  # polled like TorchRun.wait (0.2 s, x1.5, at most 1 s); done when rank 0's
    # result file is there (kinder to the baseline than waiting for the job to leave squeue)
    result_file = Path(f"{out}.json")
    while not result_file.exists() and any(
            str(j.job_id) == job.split(";")[0] and j.state.is_active
            for j in session.slurm.run(queries.jobs())):
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    result = json.loads(Path(f"{out}.json").read_text())
    return {**result, "submitted": t0, "result_at": time.time()}


def torchrun_worker(out: str) -> None:
    """What ``torchrun`` starts on each node of the baseline: the same training."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    result = train(*TRAIN_ARGS)
    if dist.get_rank() == 0:
        Path(f"{out}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def inner(reps: int, n_workers: int, account: str) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="wb-bench-", dir=Path.home()))
    try:
        return _measure(reps, n_workers, account, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _measure(reps: int, n_workers: int, account: str, workdir: Path) -> dict:
    # warm-up, not measured: imports, and one run through Slurm of each launcher
    import dask_jobqueue  # noqa: F401

    import extensions.widgets.scaler  # noqa: F401
    import workbench.scaling.cluster  # noqa: F401
    torch_via_af(1, account)
    torch_via_sbatch(1, account, workdir)
    figures: dict[str, list] = {"scale_panel_s": [], "scale_stock_s": [], "torch_af_2": [],
                                "torch_sbatch_2": [], "torch_af_1": []}
    for rep in range(reps):
        order = [("scale_stock_s", lambda: scale_stock(n_workers, account)),
                 ("scale_panel_s", lambda: scale_via_panel(n_workers, account))]
        for name, fn in (order if rep % 2 else order[::-1]):
            figures[name].append(fn())
            print(f"# {name} rep {rep}: {figures[name][-1]:.2f}", file=sys.stderr, flush=True)
            time.sleep(2)  # let the cancelled workers leave the nodes
    for rep in range(reps):
        order = [("torch_sbatch_2", lambda: torch_via_sbatch(2, account, workdir)),
                 ("torch_af_2", lambda: torch_via_af(2, account)),
                 ("torch_af_1", lambda: torch_via_af(1, account))]
        for name, fn in (order if rep % 2 else order[::-1]):
            figures[name].append(fn())
            r = figures[name][-1]
            print(f"# {name} rep {rep}: {r['result_at'] - r['submitted']:.2f}",
                  file=sys.stderr, flush=True)
    return figures


# -- outside: a session, the report ---------------------------------------------------------

def report(f: dict) -> dict:
    med = statistics.median
    out = {"scale_panel_s": med(f["scale_panel_s"]), "scale_stock_s": med(f["scale_stock_s"])}
    out["scale_ratio"] = out["scale_panel_s"] / out["scale_stock_s"]

    def total(r):
        return r["result_at"] - r["submitted"]

    for key in ("torch_af_2", "torch_sbatch_2", "torch_af_1"):
        runs = f[key]
        out[key] = {
            "total_s": med(total(r) for r in runs),
            "to_first_rank_s": med(r["entered"] - r["submitted"] for r in runs),
            "setup_s": med(r["setup_s"] for r in runs),
            "train_s": med(r["train_s"] for r in runs),
            "comm_probe_s": med(r["comm_probe_s"] for r in runs),
            "back_to_notebook_s": med(r["result_at"] - r["exited"] for r in runs),
            "world": runs[0]["world"], "backend": runs[0]["backend"],
        }
    out["torch_ratio"] = out["torch_af_2"]["total_s"] / out["torch_sbatch_2"]["total_s"]
    out["ddp_speedup_train"] = out["torch_af_1"]["train_s"] / out["torch_af_2"]["train_s"]
    out["ddp_speedup_total"] = out["torch_af_1"]["total_s"] / out["torch_af_2"]["total_s"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--user", default="ida", help="demo user whose session runs it (ida)")
    ap.add_argument("--account", default="industry-autotwin", help="project charged")
    ap.add_argument("--reps", type=int, default=3, help="runs of each measurement (3)")
    ap.add_argument("--workers", type=int, default=8, help="Dask workers to scale to (8)")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--torchrun-worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torchrun_worker:
        torchrun_worker(args.torchrun_worker)
        return 0
    if args.inner:
        print(json.dumps(inner(args.reps, args.workers, args.account)))
        return 0

    sys.path.insert(0, str(ROOT))
    from tests.scaling_session import open_session
    from workbench.demo.hub import LocalHub
    from workbench.paths import FactoryHome
    from workbench.slurm import SlurmClient

    home = FactoryHome.from_env()
    slurm = SlurmClient(slurm_conf=str(home.slurm_conf))
    session_options = {"partition": "cpu", "account": args.account, "gpus": 0, "cpus": 1,
                       "memory": "3G", "runtime": "01:00:00"}
    with open_session(LocalHub().url, home.demo_password_file.read_text().strip(), slurm,
                      args.user, session_options) as session:
        proc = session.popen(textwrap.dedent(f"""
            import runpy, sys
            sys.argv = [{str(Path(__file__).resolve())!r}, "--inner", "--reps", "{args.reps}",
                        "--workers", "{args.workers}", "--account", {args.account!r}]
            runpy.run_path(sys.argv[0], run_name="__main__")
            """))
        out, err = proc.communicate(timeout=3600)
        sys.stderr.write("".join(ln + "\n" for ln in err.splitlines() if ln.startswith("#")))
        if proc.returncode:
            sys.stderr.write(err[-5000:])
            return 1
        figures = json.loads(out.strip().splitlines()[-1])
    r = report(figures)
    print(f"scale to {args.workers} connected, median of {args.reps}:  af panel "
          f"{r['scale_panel_s']:.2f} s   SLURMCluster.scale {r['scale_stock_s']:.2f} s   "
          f"ratio {r['scale_ratio']:.2f}x (goal <= 1.1x)")
    print(f"torch 2 nodes, time to result:  torch_run {r['torch_af_2']['total_s']:.2f} s   "
          f"sbatch+srun torchrun {r['torch_sbatch_2']['total_s']:.2f} s   "
          f"ratio {r['torch_ratio']:.2f}x (goal <= 1.1x)")
    print(f"DDP 1 -> 2 nodes ({r['torch_af_2']['backend']}): training "
          f"{r['torch_af_1']['train_s']:.2f} -> {r['torch_af_2']['train_s']:.2f} s "
          f"(speed-up {r['ddp_speedup_train']:.2f}x), end to end "
          f"{r['torch_af_1']['total_s']:.2f} -> {r['torch_af_2']['total_s']:.2f} s "
          f"(speed-up {r['ddp_speedup_total']:.2f}x)")
    print("where the time goes (median s): run | to first rank | setup | train | comm probe "
          "| back to notebook")
    for key in ("torch_af_1", "torch_af_2", "torch_sbatch_2"):
        t = r[key]
        print(f"  {key:15s} {t['total_s']:6.2f} | {t['to_first_rank_s']:6.2f} | "
              f"{t['setup_s']:5.2f} | {t['train_s']:6.2f} | {t['comm_probe_s']:6.2f} | "
              f"{t['back_to_notebook_s']:5.2f}")
    line = json.dumps({"figures": figures, "report": r})
    if args.json:
        Path(args.json).write_text(line)
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
