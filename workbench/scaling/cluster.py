"""``PoolCluster``: one Dask scheduler, workers in several partitions, each pool its own size.

dask-jobqueue has no multi-partition cluster (its issues #103, #378, #419): a
``JobQueueCluster`` holds one worker template, and a second cluster cannot share the
scheduler. ``SpecCluster`` (its base) already allows a different spec per worker, so this
subclass keeps everything of ``JobQueueCluster`` (scheduler options, TLS certificates for the
workers, ``SLURMJob`` scripts, ``sbatch``/``scancel``) and changes what counts workers:

- ``worker_spec`` holds ``{pool}-{i}`` entries, each built from its pool's job options
  (:func:`.jobs.job_options`); ``scale(n, pool=...)`` adds or removes entries of that pool only
  (stock ``scale()`` counts every entry, so scaling one pool would delete the other's workers);
- ``adapt(pool=..., minimum=, maximum=)`` runs one :class:`PoolAdaptive` per pool, which
  counts and retires only its own pool's workers;
- every size is checked first (:mod:`.pools`: the spawn form's check, the partition's size,
  the project's GPU-hours), so a refused request submits nothing;
- the scheduler listens on the session node's address as Slurm gives it (``NodeAddr``), with
  temporary TLS (``security=True``); the dashboard listens on the node's loopback only and is
  reached through the user's own server (``.../proxy/{port}/status``).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from dask_jobqueue.core import JobQueueCluster
from distributed.deploy.adaptive import Adaptive
from distributed.utils import NoOpAwaitable

from .jobs import WorkerJob, job_options
from .pools import PoolRequest, ScalingError, WorkerPool, check_count, check_pool, check_total
from .session import Session, submission_env
from .workers import worker_rows


def pool_of(worker_name) -> str:
    """``"gpu-3"`` -> ``"gpu"``."""
    return str(worker_name).rsplit("-", 1)[0]


class PoolAdaptive(Adaptive):
    """Adaptive scaling of one pool: counts, adds and retires only that pool's workers.

    Its target is the scheduler's (``Scheduler.adaptive_target``: the workers the queued work
    wants) clamped to the pool's ``minimum``..``maximum``."""

    def __init__(self, cluster: PoolCluster, pool: str, **kwargs):
        self.pool = pool
        super().__init__(cluster=cluster, **kwargs)

    def _mine(self, names) -> set:
        return {n for n in names if pool_of(n) == self.pool}

    @property
    def plan(self):
        return self._mine(self.cluster.plan)

    @property
    def requested(self):
        return self._mine(self.cluster.requested)

    @property
    def observed(self):
        return self._mine(self.cluster.observed)

    async def workers_to_close(self, target: int) -> list[str]:
        # the newest first: they have the least data and the most walltime left to give back
        return sorted(self.observed, key=lambda n: int(str(n).rsplit("-", 1)[1]),
                      reverse=True)[:max(len(self.observed) - target, 0)]

    async def scale_up(self, n: int) -> None:
        self.cluster._resize(self.pool, n)


class PoolCluster(JobQueueCluster):
    """A Dask cluster whose workers are Slurm jobs in several partitions (worker pools).

    >>> cluster = PoolCluster([WorkerPool("cpu", "cpu", cpus=2, memory="4G"),
    ...                        WorkerPool("gpu", "gpu", gpus=1, cpus=2, memory="8G")],
    ...                       account="startup-helios")
    >>> cluster.scale(4, pool="cpu"); cluster.scale(2, pool="gpu")
    >>> client = Client(cluster)
    >>> client.submit(train, resources={"GPU": 1})   # runs on a gpu worker

    ``pools``: :class:`WorkerPool` objects (or dicts of their fields). ``account``: the project
    charged (default: the user's first). ``session``: where the notebook runs (default:
    :meth:`Session.current`). ``security``: True for temporary TLS between scheduler and
    workers. ``death_timeout``: seconds a worker outlives an unreachable scheduler (a killed
    kernel) before its job ends. ``allocations_file``: the file of GPU-hour grants (default:
    the spawner's). ``view``: a cluster view just built by the caller (default: built here).
    Other keywords go to ``JobQueueCluster``.
    """

    job_cls = WorkerJob

    def __init__(self, pools: Sequence[WorkerPool | Mapping], account: str | None = None, *,
                 session: Session | None = None, security=True, death_timeout: float = 60,
                 log_directory: str | None = None, allocations_file: str | None = None,
                 scheduler_options: dict | None = None, view=None, **kwargs):
        session = session or Session.current()
        view = view if view is not None else session.cluster_view(allocations_file)
        pools = [p if isinstance(p, WorkerPool) else WorkerPool.from_dict(p) for p in pools]
        if not pools:
            raise ScalingError("pools", "give at least one worker group, e.g. "
                               "WorkerPool('cpu', 'cpu', cpus=2)")
        names = [p.name for p in pools]
        if len(set(names)) != len(names):
            raise ScalingError("name", f"worker group names must differ: {names}")
        account = account if account is not None else (view.accounts[0] if view.accounts
                                                        else "")
        checked = {p.name: check_pool(p, account, view) for p in pools}
        home = Path.home() / ".aifactory"
        log_directory = log_directory or str(home / "dask-logs")
        Path(log_directory).mkdir(parents=True, exist_ok=True)
        tls_dir = home / "dask-tls"
        tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        env = submission_env(os.environ)
        self.session = session
        self.account = account
        self.allocations_file = allocations_file
        self.pools: dict[str, PoolRequest] = checked
        self._pool_options = {
            name: job_options(pr, tag=session.worker_tag, submit_env=env, python=sys.executable,
                              log_directory=log_directory, death_timeout=death_timeout)
            for name, pr in checked.items()}
        self._pool_counter = dict.fromkeys(checked, 0)
        self._pool_adaptive: dict[str, PoolAdaptive] = {}
        options = {"host": session.address, "dashboard_address": "127.0.0.1:0",
                   **(scheduler_options or {})}
        super().__init__(n_workers=0, security=security or None,
                         shared_temp_directory=str(tls_dir),
                         scheduler_options=options, **self._pool_options[names[0]], **kwargs)

    # -- sizes -----------------------------------------------------------------------------

    def pool_workers(self, pool: str) -> list:
        """The names of ``pool``'s workers planned now (submitted or not), oldest first."""
        return sorted((n for n in self.worker_spec if pool_of(n) == pool),
                      key=lambda n: int(str(n).rsplit("-", 1)[1]))

    def pool_sizes(self) -> dict[str, int]:
        return {p: len(self.pool_workers(p)) for p in self.pools}

    def check(self, sizes: Mapping[str, int]) -> float:
        """Check the pools at ``sizes`` (others at their current size) against the live
        cluster and the project's GPU-hours; :class:`ScalingError` if refused. Returns the
        GPU-hours all of them cost."""
        unknown = sorted(set(sizes) - set(self.pools))
        if unknown:
            raise ScalingError("pool", f"{unknown[0]!r} is not a worker group of this cluster; "
                               f"they are: {', '.join(self.pools)}")
        view = self.session.cluster_view(self.allocations_file)
        planned = {**self.pool_sizes(), **sizes}
        checked = [(check_pool(self.pools[p].pool, self.account, view, planned[p]), planned[p])
                   for p in self.pools]
        return check_total(checked, self.account, view)

    def scale(self, n=None, pool: str | None = None, jobs: int = 0, memory=None, cores=None):
        """Scale one pool to ``n`` workers: ``scale(4, pool="cpu")``; or several at once:
        ``scale({"cpu": 4, "gpu": 2})``. With a single pool, ``scale(n)`` works as usual.
        Stops that pool's adaptive scaling. Checked first (:meth:`check`)."""
        if memory is not None or cores is not None:
            raise ScalingError("n", "scale a worker group by its number of workers: "
                               "scale(4, pool='cpu')")
        if isinstance(n, Mapping):
            sizes = dict(n)
        elif pool is None and (jobs if n is None else n) == 0:
            sizes = dict.fromkeys(self.pools, 0)  # scale(0): every pool (also on close)
        else:
            if pool is None:
                if len(self.pools) != 1:
                    raise ScalingError("pool", "this cluster has several worker groups ("
                                       f"{', '.join(self.pools)}): name one, e.g. "
                                       f"scale(2, pool={next(iter(self.pools))!r})")
                pool = next(iter(self.pools))
            sizes = {pool: jobs if n is None else n}
        sizes = {p: check_count(c) for p, c in sizes.items()}
        current = self.pool_sizes()
        if any(c > current.get(p, 0) for p, c in sizes.items()) or set(sizes) - set(current):
            self.check(sizes)  # only growth can be refused; shrinking always works
        for p, count in sizes.items():
            adaptive = self._pool_adaptive.pop(p, None)
            if adaptive is not None:
                adaptive.stop(reason="scaled by hand")
            self._resize(p, count)
        if self.asynchronous:
            return NoOpAwaitable()

    def _resize(self, pool: str, n: int) -> None:
        """Make ``pool`` ``n`` workers (already checked): remove the not yet connected, then
        the newest; add new names. The jobs are submitted/cancelled by ``_correct_state``."""
        names = self.pool_workers(pool)
        if len(names) > n:
            connected = {w["name"] for w in self.scheduler_info.get("workers", {}).values()}
            order = ([x for x in reversed(names) if x not in connected]
                     + [x for x in reversed(names) if x in connected])
            for name in order[:len(names) - n]:
                del self.worker_spec[name]
        elif self.status.name not in ("closing", "closed"):
            for _ in range(n - len(names)):
                name = f"{pool}-{self._pool_counter[pool]}"
                self._pool_counter[pool] += 1
                self.worker_spec[name] = {"cls": self.job_cls,
                                          "options": {**self._job_kwargs,
                                                      **self._pool_options[pool]}}
        self.loop.add_callback(self._correct_state)

    def adapt(self, pool: str | None = None, minimum: int = 0, maximum: int | None = None,
              **kwargs) -> PoolAdaptive:
        """Adaptive scaling of one pool between ``minimum`` and ``maximum`` workers (checked
        at ``maximum`` first: the most it could cost must fit the project's GPU-hours).
        Other keywords go to ``distributed``'s ``Adaptive`` (``interval``, ``wait_count``)."""
        if pool is None:
            if len(self.pools) != 1:
                raise ScalingError("pool", "name the worker group to adapt: "
                                   f"adapt(pool={next(iter(self.pools))!r}, minimum=0, "
                                   "maximum=4)")
            pool = next(iter(self.pools))
        minimum = check_count(minimum, "minimum")
        if maximum is None or (isinstance(maximum, float) and math.isinf(maximum)):
            raise ScalingError("maximum", "give the most workers adaptive scaling may start")
        maximum = check_count(maximum, "maximum", low=max(minimum, 1))
        self.check({pool: maximum})
        old = self._pool_adaptive.pop(pool, None)
        if old is not None:
            old.stop(reason="adapt called again")
        adaptive = PoolAdaptive(self, pool, minimum=minimum, maximum=maximum, **kwargs)
        self._pool_adaptive[pool] = adaptive
        return adaptive

    def adaptive(self, pool: str) -> tuple[int, int] | None:
        """(minimum, maximum) of ``pool``'s adaptive scaling, None if it is not adaptive."""
        a = self._pool_adaptive.get(pool)
        return (a.minimum, a.maximum) if a is not None and a.state != "stopped" else None

    def define_pool(self, pool: WorkerPool | Mapping) -> PoolRequest:
        """Add a worker group, or change one that has no workers now (checked first)."""
        pool = pool if isinstance(pool, WorkerPool) else WorkerPool.from_dict(pool)
        if pool.name in self.pools and self.pools[pool.name].pool == pool:
            return self.pools[pool.name]  # unchanged (sizes are checked by scale/adapt)
        if self.pool_workers(pool.name):
            raise ScalingError("pool", f"worker group {pool.name!r} has workers: scale it to 0 "
                               "before changing what its workers ask for", pool.name)
        checked = check_pool(pool, self.account, self.session.cluster_view(
            self.allocations_file))
        first = next(iter(self._pool_options.values()))
        self._pool_options[pool.name] = job_options(
            checked, tag=self.session.worker_tag, submit_env=first["submit_env"],
            python=first["python"], log_directory=first["log_directory"],
            death_timeout=first["death_timeout"])
        self.pools[pool.name] = checked
        self._pool_counter.setdefault(pool.name, 0)
        return checked

    def worker_rows(self, jobs, newer=()) -> list:
        """The live worker table (:func:`.workers.worker_rows`) from one ``squeue``
        (``newer``: job ids submitted after it was read)."""
        connected = [w.get("name") for w in self.scheduler_info.get("workers", {}).values()]
        return worker_rows(self.worker_spec, self.job_ids(), connected, jobs,
                           {p: r.request.partition for p, r in self.pools.items()}, newer)

    # -- what the user sees ----------------------------------------------------------------

    def job_ids(self, pool: str | None = None) -> dict[str, int]:
        """Worker name -> Slurm job id of the submitted workers (of ``pool``)."""
        return {name: int(w.job_id) for name, w in self.workers.items()
                if getattr(w, "job_id", None) and (pool is None or pool_of(name) == pool)}

    @property
    def dashboard_port(self) -> int | None:
        return (self.scheduler_info.get("services") or {}).get("dashboard")

    @property
    def dashboard_link(self) -> str:
        """The dashboard through the user's own server (jupyter-server-proxy)."""
        port = self.dashboard_port
        if port and self.session.service_prefix:
            return self.session.proxied_url(port)
        return super().dashboard_link

    def close(self, *args, **kwargs):
        for adaptive in self._pool_adaptive.values():
            adaptive.stop(reason="cluster closed")
        self._pool_adaptive.clear()
        return super().close(*args, **kwargs)
