"""Scaling from a notebook: Dask workers in several partitions and torch runs on several
nodes, as the user's own Slurm jobs, tagged with the owning session.

One module, one job:

- :mod:`.session`: where the notebook runs (user, session job, node address, tag) and the
  clean environment worker jobs are submitted with;
- :mod:`.pools`: worker groups and the request check (the spawn form's
  :func:`~workbench.resources.validate_request` and cluster view, plus counts and cost);
- :mod:`.jobs`: the worker job, dask-jobqueue's ``SLURMJob`` with the tag and a clean env;
- :mod:`.cluster`: :class:`PoolCluster`, one Dask scheduler with one worker spec per pool,
  scaled and adapted per pool;
- :mod:`.workers`: the live table of worker jobs (state, node, why it waits);
- :mod:`.torchrun`: :func:`torch_run`, a function on every rank of one Slurm job (submitit).

Nothing here is imported by ``import aifactory``; dask and torch load on first use.
"""

from .pools import PoolRequest, ScalingError, WorkerPool
from .session import NotInSession, Session

__all__ = ["NotInSession", "PoolRequest", "ScalingError", "Session", "WorkerPool"]
