"""The worker job: dask-jobqueue's ``SLURMJob``, tagged and submitted with a clean env.

dask-jobqueue's extension point for a batch system is its job class; this one changes three
things and keeps the rest (script template, ``sbatch``/``scancel``, job id parsing):

- ``--comment=<worker tag>``: the job belongs to the session (:mod:`workbench.tags`);
- GPUs in the cluster's GRES syntax (``--gres=gpu:h100:1``) and a ``GPU`` worker resource;
- ``sbatch`` runs with :func:`~workbench.scaling.session.submission_env`: no ``SLURM_*`` of
  the session's allocation, no ``JUPYTERHUB_API_TOKEN``.
"""

from __future__ import annotations

import shlex

from dask_jobqueue.slurm import SLURMJob

from .pools import PoolRequest


class WorkerJob(SLURMJob):
    """One Dask worker of a worker group, as one Slurm job of the user."""

    config_name = "slurm"

    def __init__(self, *args, submit_env: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.submit_env = submit_env

    async def _submit_job(self, script_filename):
        argv = shlex.split(self.submit_command) + [script_filename]
        if self.submit_env is None:
            return await self._call(argv)
        return await self._call(argv, env=self.submit_env)


def job_options(pool: PoolRequest, *, tag: str, submit_env: dict | None, python: str,
                log_directory: str, death_timeout: float) -> dict:
    """``WorkerJob`` keyword arguments for one worker of ``pool`` (a validated request)."""
    r = pool.request
    if not tag or any(c.isspace() or c in "'\"\\$`" for c in tag):
        raise ValueError(f"{tag!r} is not a worker tag")
    directives = [f"--comment={tag}"] + ([f"--gres={r.gres}"] if r.gres else [])
    extra_args = ["--resources", f"GPU={r.gpus}"] if r.gpus else []
    return {
        "cores": r.cpus, "memory": f"{r.memory_mb}MiB", "processes": 1,
        "queue": r.partition, "account": r.account, "walltime": r.time,
        "job_mem": r.memory, "job_cpu": r.cpus, "job_name": f"dask-{pool.name}",
        "job_extra_directives": directives, "worker_extra_args": extra_args,
        "python": python, "log_directory": log_directory, "death_timeout": death_timeout,
        "submit_env": submit_env,
    }
