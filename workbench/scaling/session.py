"""The session a notebook runs in, as worker jobs need it.

A session is a Slurm job of the user (started by the hub's ``SlurmGPUSpawner``); its kernel
runs as the user on the session's node with ``SLURM_CONF`` set. Worker jobs are submitted from
there, as the user, and belong to the session: their tag (Slurm comment) is the session's own
plus ``session=<job id>`` (:func:`workbench.tags.worker_tag`), so that the hub's reconciler
and the spawner's ``stop()`` can cancel them once the session is gone.

The cluster view and budgets come from :func:`workbench.resources.cluster_view`, as the spawn
form's do: one source for what a user may ask for.

Everything in a kernel that reads the queue (the session itself, every scaler panel, torch
runs) reads one job snapshot (:func:`session_jobs`): however many panels are open, the
kernel runs at most one ``squeue`` per :data:`SESSION_PERIOD`.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..resources import ClusterView, budget_allocations, cluster_view
from ..slurm import SlurmClient
from ..slurm.snapshot import JobSnapshot, shared_nodes, shared_snapshot
from ..tags import parse_job_tag, worker_tag

log = logging.getLogger(__name__)

#: prefixes of variables a worker job must not inherit from the session: Slurm's job
#: variables (they describe the session's allocation, not the new one), the hub's (the
#: server's API token above all) and torch's rendezvous variables
_DROP_PREFIXES = ("SLURM_", "SLURMD_", "SRUN_", "SBATCH_", "SALLOC_", "JUPYTERHUB_", "JPY_",
                  "SUBMITIT_")
_DROP_NAMES = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK",
               "LOCAL_WORLD_SIZE", "CUDA_VISIBLE_DEVICES")
#: kept although they match a prefix above: the cluster's config
_KEEP = ("SLURM_CONF",)

_environ_lock = threading.Lock()

#: the least time (s) between two ``squeue`` of one kernel, whatever reads the queue in it
#: (scaler panels, sessions, torch runs): at most 20 a minute per session
SESSION_PERIOD = 3.0
#: how old (s) the node addresses a session reads may be (they change with slurm.conf only)
NODES_AGE = 60.0


def session_jobs(slurm: SlurmClient) -> JobSnapshot:
    """The kernel's one job snapshot of ``slurm``'s cluster, read with ``.read()`` from any
    thread: one ``squeue`` per :data:`SESSION_PERIOD` at most, for every reader."""
    return shared_snapshot(slurm, SESSION_PERIOD, SESSION_PERIOD)


class NotInSession(RuntimeError):
    """Worker jobs are started from a workbench session (a notebook server job) only."""


def submission_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without what a job submitted from inside a session must not inherit."""
    return {k: v for k, v in environ.items()
            if k in _KEEP or not (k.startswith(_DROP_PREFIXES) or k in _DROP_NAMES)}


class clean_environ:  # noqa: N801 (a context manager used like a function)
    """``with clean_environ():`` runs a launcher that calls ``sbatch`` with ``os.environ``
    (submitit) with :func:`submission_env` in place; the session's variables come back after.
    """

    def __enter__(self):
        _environ_lock.acquire()
        self._saved = dict(os.environ)
        clean = submission_env(self._saved)
        for k in set(self._saved) - set(clean):
            del os.environ[k]
        return self

    def __exit__(self, *exc):
        try:
            os.environ.clear()
            os.environ.update(self._saved)
        finally:
            _environ_lock.release()
        return False


def run_sync(coro):
    """Run ``coro`` to completion from synchronous code, also inside a running event loop
    (a Jupyter kernel's), by giving it a loop of its own in a thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict = {}

    def target():
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as e:  # noqa: BLE001 - handed back to the caller below
            box["error"] = e

    t = threading.Thread(target=target, name="workbench-scaling-sync")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


@dataclass(frozen=True)
class Session:
    """Who and where the notebook is: user, session job, its node and that node's address."""

    user: str
    job_id: int
    node: str
    address: str
    tag: str
    service_prefix: str = ""
    slurm: SlurmClient = field(default_factory=SlurmClient, compare=False, repr=False)

    @classmethod
    def current(cls, slurm: SlurmClient | None = None,
                environ: Mapping[str, str] | None = None) -> Session:
        """The session this process runs in, from its environment and Slurm.

        Raises :class:`NotInSession` outside a workbench session job."""
        env = os.environ if environ is None else environ
        slurm = slurm or SlurmClient(slurm_conf=env.get("SLURM_CONF") or None)
        job_id = env.get("SLURM_JOB_ID", "")
        if not job_id.isdigit():
            raise NotInSession(
                "This is not a workbench session (no SLURM_JOB_ID): start a server from the "
                "hub and scale from its notebooks, so that the workers belong to a session.")
        job = session_jobs(slurm).read().get(int(job_id))
        if job is None or not job.state.is_running:
            raise NotInSession(f"Session job {job_id} is not running in Slurm.")
        tag = job.comment
        if parse_job_tag(tag) is None or "session" in (parse_job_tag(tag) or {}):
            raise NotInSession(
                f"Job {job_id} is not a workbench session (its comment is {tag!r}); worker "
                "jobs are started from a notebook server the hub started.")
        node = env.get("SLURMD_NODENAME") or job.batch_host
        address = next((n.address for n in shared_nodes(slurm).read(NODES_AGE)
                        if n.name == node), "")
        if not address:
            raise NotInSession(f"Slurm does not know the address of node {node!r}.")
        return cls(user=getpass.getuser(), job_id=int(job_id), node=node, address=address,
                   tag=tag, service_prefix=env.get("JUPYTERHUB_SERVICE_PREFIX", ""),
                   slurm=slurm)

    @property
    def worker_tag(self) -> str:
        """The comment every worker job of this session carries."""
        return worker_tag(self.tag, self.job_id)

    @property
    def jobs(self) -> JobSnapshot:
        """The kernel's shared job snapshot (:func:`session_jobs`)."""
        return session_jobs(self.slurm)

    def worker_jobs(self, jobs=None) -> list:
        """This session's active worker jobs, from the shared snapshot (or ``jobs``)."""
        jobs = self.jobs.read().values() if jobs is None else jobs
        return [j for j in jobs if j.comment == self.worker_tag and j.state.is_active]

    def cluster_view(self, allocations_file: str | None = None) -> ClusterView:
        """Partitions, this user's accounts and their GPU-hours left, as the spawn form
        computes them (``allocations_file`` as its ``allocations_file`` option)."""
        allocations = budget_allocations(allocations_file, log, f"{self.user} (scaling)")
        return run_sync(cluster_view(self.slurm, self.user, allocations))

    def proxied_url(self, port: int, path: str = "status") -> str:
        """``{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/{path}`` (jupyter-server-proxy), the way
        the user's browser reaches a port of the session's node."""
        prefix = self.service_prefix or "/"
        return f"{prefix.rstrip('/')}/proxy/{int(port)}/{path}"

