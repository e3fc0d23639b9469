"""``torch_run``: a function on every rank of one Slurm job, with torch.distributed set up.

The launcher is submitit (the field's usual one for Slurm): it pickles the function, writes
one ``sbatch`` script whose ``srun`` starts ``nodes x tasks_per_node`` tasks, and brings back
each task's result, exception and logs; ``srun torchrun`` would need a rendezvous of its own
and a script per run, and brings nothing back to the notebook. Ranks, world size and the
master come from Slurm (``submitit.helpers.TorchDistributedEnvironment``); the master's
address is the first node's ``NodeAddr`` from the Slurm layer (node names need not resolve).
The backend is NCCL when CUDA is available, gloo when not.

Before anything is submitted the request goes through the spawn form's check
(:func:`workbench.resources.validate_request`: partition, account, GPUs per node, CPUs,
memory, walltime), then the node count (at most the partition's nodes) and the cost of all
nodes against the project's GPU-hours; the function must pickle. The job carries the
session's worker tag, is charged to the chosen project and is cancelled by a kernel
interrupt. On Slurm 22.05 ``srun`` does not inherit ``--cpus-per-task``: the script exports
``SRUN_CPUS_PER_TASK``; ``--kill-on-bad-exit`` ends every rank when one fails.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from ..resources import InvalidRequest, check_budget, validate_request
from ..slurm import JobState, SlurmClient, queries
from .pools import ScalingError, WorkerPool, check_count, check_nodes
from .session import Session, clean_environ, session_jobs

log = logging.getLogger(__name__)


class TorchRunError(RuntimeError):
    """A rank of a torch run raised (``rank``, ``error``: its last traceback line), or the
    job ended without a result (``state``). ``log`` is that rank's stderr file."""

    def __init__(self, message: str, job_id: str, rank: int | None = None, error: str = "",
                 log: str = "", state: str = ""):
        self.job_id, self.rank, self.error, self.log, self.state = job_id, rank, error, log, state
        super().__init__(message)


@dataclass(frozen=True)
class RankInfo:
    """What every rank's function may read (also from ``torch.distributed``)."""

    rank: int
    local_rank: int
    world_size: int
    master: str
    backend: str


def _rank_main(fn: Callable, args: tuple, kwargs: dict, timeout_s: float):
    """Runs in each Slurm task: set up torch.distributed from Slurm, run ``fn``, tear down."""
    import submitit
    import torch
    import torch.distributed as dist

    # the master's port, the same on every rank, from the job id, below Linux's ephemeral
    # range (32768-60999): submitit's own pick (20000-60000) can meet a port the node
    # gave an outgoing connection and fail with EADDRINUSE
    os.environ["MASTER_PORT"] = str(20000 + int(os.environ["SLURM_JOB_ID"]) % 10000)
    env = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False,
                                                                 overwrite=True)
    node = env.master_addr
    client = SlurmClient(slurm_conf=os.environ.get("SLURM_CONF") or None)
    address = next((n.address for n in client.run(queries.nodes()) if n.name == node), node)
    os.environ["MASTER_ADDR"] = address
    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(env.local_rank % torch.cuda.device_count())
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    print(f"workbench: rank {env.rank}/{env.world_size} on {os.uname().nodename} "
          f"({os.environ.get('SLURMD_NODENAME', '?')}), master {address}:{env.master_port}, "
          f"backend {backend}", flush=True)
    try:
        result = fn(*args, **kwargs)
        dist.barrier()  # no rank leaves while another is still connecting (gloo's mesh)
        return result
    except Exception as e:
        # stamped, so that the notebook names the rank that failed first, not the ranks a
        # collective then failed on ("connection closed by peer")
        raise RankError(f"at {time.time():.6f}: {type(e).__name__}: {e}") from e
    finally:
        dist.destroy_process_group()


class RankError(RuntimeError):
    """What a rank raised, with the time it did (read back by :meth:`TorchRun.result`)."""


_RANK_ERROR = re.compile(r"RankError: at ([0-9.]+): (.*)")


class TorchRun:
    """One submitted torch run: its Slurm job, state, per-rank logs, result and cancel."""

    def __init__(self, job, ranks: int, slurm: SlurmClient):
        self.job = job
        self.ranks = ranks
        self.slurm = slurm

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)

    def state(self) -> JobState:
        """The job's state, from the kernel's shared job snapshot (at most
        :data:`~workbench.scaling.session.SESSION_PERIOD` old; sacct once it has left
        squeue)."""
        job = session_jobs(self.slurm).read().get(int(self.job_id))
        if job is not None:
            return job.state
        end = self.slurm.run(queries.job_end(int(self.job_id)))
        return end[0] if end else JobState.UNKNOWN

    def logs(self, rank: int = 0, stream: str = "stdout") -> str:
        """What ``rank`` has written so far (``stdout`` or ``stderr``)."""
        task = self.job.task(rank)
        text = task.stdout() if stream == "stdout" else task.stderr()
        return text or ""

    def log_path(self, rank: int = 0) -> str:
        return str(self.job.task(rank).paths.stderr)

    def done(self) -> bool:
        return self.job.done()

    def cancel(self) -> None:
        self.job.cancel(check=False)

    def wait(self, poll_s: float = 1.0, on_state: Callable[[JobState], None] | None = None):
        """Until the job ends; a kernel interrupt (KeyboardInterrupt) cancels it."""
        last = None
        delay = 0.2
        try:
            while True:
                state = self.state()
                # submitit asks sacct itself when forced: only once the job has left the
                # active states in the shared snapshot (its result file ends it sooner)
                if self.job.done(force_check=not state.is_active):
                    break
                if state != last and on_state is not None:
                    on_state(state)
                last = state
                time.sleep(delay)
                delay = min(delay * 1.5, poll_s)
        except KeyboardInterrupt:
            log.warning("interrupted: cancelling torch run job %s", self.job_id)
            self.cancel()
            raise

    def result(self, poll_s: float = 1.0, on_state=None):
        """Rank 0's result; :class:`TorchRunError` naming the rank that failed."""
        self.wait(poll_s, on_state)
        failed = []
        for rank in range(self.ranks):
            exc = self.job.task(rank).exception()
            if exc is not None:
                failed.append((rank, exc))
        if not failed:
            return self.job.task(0).result()
        # the rank that raised first is the cause; the others failed in a collective after
        # it, or were killed by --kill-on-bad-exit
        raised = []
        for rank, exc in failed:
            stamps = _RANK_ERROR.findall(str(exc))
            if stamps:
                raised.append((float(stamps[-1][0]), rank, stamps[-1][1].strip()))
        if raised:
            _, rank, error = min(raised)
            raise TorchRunError(f"rank {rank} of torch run job {self.job_id} raised: {error} "
                                f"(its log: {self.log_path(rank)})", self.job_id, rank, error,
                                self.log_path(rank)) from None
        rank, exc = failed[0]
        text = str(exc).split("----------------------")[0].strip().splitlines()
        last = text[-1].strip() if text else ""
        state = self.state().value
        raise TorchRunError(f"torch run job {self.job_id} ended {state} without a result: "
                            f"{last} (rank {rank}'s log: {self.log_path(rank)})",
                            self.job_id, rank, last, self.log_path(rank), state) from None


def torch_submit(fn: Callable, *args, nodes: int = 1, gpus_per_node: int = 0,
                 tasks_per_node: int | None = None, partition: str = "gpu",
                 gpu_type: str = "", cpus_per_task: int = 1, memory: str = "4G",
                 runtime: str = "00:30:00", account: str | None = None,
                 session: Session | None = None, allocations_file: str | None = None,
                 folder: str | None = None, init_timeout_s: float = 300,
                 **kwargs) -> TorchRun:
    """Check, then submit ``fn(*args, **kwargs)`` on every rank; returns the :class:`TorchRun`.
    See :func:`torch_run` for the parameters."""
    session = session or Session.current()
    nodes = check_count(nodes, "nodes", low=1)
    gpus_per_node = check_count(gpus_per_node, "gpus_per_node")
    tasks = check_count(tasks_per_node if tasks_per_node is not None else max(gpus_per_node, 1),
                        "tasks_per_node", low=1)
    cpus_per_task = check_count(cpus_per_task, "cpus_per_task", low=1)
    view = session.cluster_view(allocations_file)
    if account is None:
        account = view.accounts[0] if view.accounts else ""
    options = WorkerPool("torch", partition, gpus_per_node, gpu_type, cpus_per_task * tasks,
                         memory, runtime).options(account)
    try:
        request = validate_request(options, view)
    except InvalidRequest as e:
        raise ScalingError(e.field, e.message) from None
    check_nodes(nodes, request, view)
    if request.gpus:
        try:
            check_budget(replace(request, gpus=request.gpus * nodes), view.budgets.get(account))
        except InvalidRequest as e:
            raise ScalingError("nodes", f"{nodes} nodes: {e.message}") from None
    import cloudpickle
    import submitit

    try:
        cloudpickle.dumps((fn, args, kwargs))
    except Exception as e:  # noqa: BLE001 - whatever pickling raises is the user's answer
        raise ScalingError("fn", f"the function or its arguments cannot be sent to the "
                           f"ranks: {type(e).__name__}: {e}") from None
    folder = folder or str(Path.home() / ".aifactory" / "torch-runs" / "%j")
    executor = submitit.SlurmExecutor(folder=folder, python=sys.executable)
    executor.update_parameters(
        job_name=f"torch-{getattr(fn, '__name__', 'run')}"[:40], partition=request.partition,
        account=request.account, nodes=nodes, ntasks_per_node=tasks,
        cpus_per_task=cpus_per_task, mem=request.memory, time=request.runtime_min,
        comment=session.worker_tag, wckey="",
        setup=["export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK"],
        srun_args=["--kill-on-bad-exit=1"],
        **({"gres": request.gres} if request.gres else {}))
    with clean_environ():  # no SLURM_* of the session, no JUPYTERHUB_API_TOKEN
        job = executor.submit(_rank_main, fn, args, kwargs, init_timeout_s)
    session.jobs.invalidate()  # the next look at the queue must see the new job
    log.info("torch run %s: job %s, %d x %d ranks in %s for %s", getattr(fn, "__name__", fn),
             job.job_id, nodes, tasks, request.partition, request.account)
    return TorchRun(job, nodes * tasks, session.slurm)


def torch_run(fn: Callable, *args, nodes: int = 1, gpus_per_node: int = 0,
              tasks_per_node: int | None = None, partition: str = "gpu", gpu_type: str = "",
              cpus_per_task: int = 1, memory: str = "4G", runtime: str = "00:30:00",
              account: str | None = None, session: Session | None = None,
              allocations_file: str | None = None, verbose: bool = True, **kwargs):
    """Run ``fn(*args, **kwargs)`` on every rank of one Slurm job and return rank 0's result.

    ``nodes`` nodes of ``partition``, ``tasks_per_node`` ranks on each (default: one per GPU,
    at least one), ``gpus_per_node`` GPUs of ``gpu_type`` per node; ``cpus_per_task``,
    ``memory`` (per node) and ``runtime`` as in the spawn form; ``account``: the project
    charged (default: the user's first). ``torch.distributed`` is initialised before ``fn``
    runs (NCCL with CUDA, gloo without). Refused requests raise :class:`ScalingError` before
    anything is submitted; a rank that raises gives :class:`TorchRunError`; interrupting the
    kernel cancels the job. ``verbose`` prints the job's state as it changes.
    """
    run = torch_submit(fn, *args, nodes=nodes, gpus_per_node=gpus_per_node,
                       tasks_per_node=tasks_per_node, partition=partition, gpu_type=gpu_type,
                       cpus_per_task=cpus_per_task, memory=memory, runtime=runtime,
                       account=account, session=session, allocations_file=allocations_file,
                       **kwargs)

    def show(state: JobState) -> None:
        if verbose:
            print(f"torch run job {run.job_id}: {state.value}", flush=True)

    return run.result(on_state=show)
