"""The session's job in Slurm: how the spawner reaches Slurm, and its job's submission,
state and cancellation, as the user, through :mod:`workbench.slurm` (argv lists, typed
results). All sessions of the hub share one ``squeue`` snapshot: Slurm calls do not grow with
the number of sessions; a Slurm error while looking reads as "unknown", never as "job gone".
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

from batchspawner import JobStatus
from jupyterhub.spawner import SpawnException
from traitlets import Float, Unicode, default
from traitlets.config import LoggingConfigurable

from workbench.metrics import CountingSlurmClient, slurm_calls
from workbench.slurm import Job, JobState, SlurmClient, SlurmError, queries
from workbench.slurm.snapshot import shared_nodes, shared_snapshot


class SlurmJobMixin(LoggingConfigurable):
    """batchspawner's job calls on the Slurm layer; the spawner provides ``render_script``,
    ``request``, ``user``, ``job_id``, ``audit``, ``get_env`` and ``persist_state``."""

    slurm_conf = Unicode(
        help="""Path of the cluster's slurm.conf, passed to every Slurm command as SLURM_CONF
        and into the jobs. Empty: Slurm's own default (as on a site's login node).
        Example: '/var/lib/aifactory/etc/slurm.conf'.""",
    ).tag(config=True)

    @default("slurm_conf")
    def _default_slurm_conf(self):
        return os.environ.get("SLURM_CONF", "")

    slurm_bindir = Unicode(
        "",
        help="Directory of sbatch, squeue, scancel... Empty: found on the hub's PATH. "
        "Example: '/usr/bin'.",
    ).tag(config=True)

    slurm_timeout = Float(
        30.0, min=1.0,
        help="Seconds a single Slurm command may take before it counts as 'controller "
        "unavailable' (a transient state, not a failure). Example: 30.",
    ).tag(config=True)

    snapshot_max_age = Float(
        1.0, min=0.0,
        help="Seconds one shared squeue snapshot serves every starting session of this hub "
        "before it is refreshed. Example: 1.0.",
    ).tag(config=True)

    job: Job | None = None  # the job as the last snapshot saw it

    @property
    def slurm(self) -> SlurmClient:
        """The Slurm layer, each command counted on the hub's ``/hub/metrics``
        (``workbench_slurm_calls_total{command}``)."""
        return CountingSlurmClient(slurm_calls(), slurm_conf=self.slurm_conf or None,
                                   bindir=self.slurm_bindir or None, timeout=self.slurm_timeout)

    @property
    def jobs(self):
        return shared_snapshot(self.slurm, self.snapshot_max_age)

    async def submit_batch_script(self):
        if self.request is None:
            raise SpawnException("No validated request to submit.", reason="no-request")
        script = self.render_script()
        try:
            job_id = await self.slurm.arun(
                queries.submit(script, as_user=self.user.name, env=self.get_env()))
        except SlurmError as e:
            self.audit.record(self.user.name, "session.submit-failed", self._log_name,
                              error=e.stderr)
            raise SpawnException(f"Slurm refused the job: {e.stderr}",
                                 reason="submit-failed") from e
        self.job_id = str(job_id)
        self._submitted_at = asyncio.get_running_loop().time()
        self.persist_state()  # a hub that dies from here on re-adopts this job
        self.jobs.invalidate()
        self.log.info("%s: submitted job %s (%s)", self._log_name, job_id,
                      self.request.as_options())
        self.audit.record(self.user.name, "session.submit", self._log_name, job_id=job_id,
                          **self.request.as_options())
        return self.job_id

    async def query_job_status(self, max_age: float | None = None):
        if not self.job_id:
            self.job = None
            return JobStatus.NOTFOUND
        try:
            jobs = await self.jobs.jobs(max_age)
        except SlurmError as e:
            self.log.warning("%s: Slurm not answering, job %s state unknown: %s",
                             self._log_name, self.job_id, e)
            return JobStatus.UNKNOWN
        job = jobs.get(int(self.job_id))
        if job is not None:
            self.job = job
        elif self.job is None or not self.job.state.is_finished:
            self.job = None
        if job is None:
            return JobStatus.NOTFOUND
        self.job_status = f"{job.state.value} {job.batch_host}".strip()
        if job.state is JobState.COMPLETING:
            # the job is ending (its server exited, was cancelled, or its node was lost and
            # Slurm waits for it): the session is over, whatever the node still says
            return JobStatus.NOTFOUND
        if job.state.is_running:
            return JobStatus.RUNNING
        if job.state.is_pending:
            return JobStatus.PENDING
        if job.state in (JobState.SUSPENDED, JobState.UNKNOWN):
            return JobStatus.UNKNOWN
        return JobStatus.NOTFOUND

    def state_ispending(self):
        return bool(self.job and self.job.state.is_pending)

    def state_isrunning(self):
        return bool(self.job and self.job.state.is_running)

    def state_gethost(self):
        return self.job.batch_host if self.job else ""

    async def node_address(self, node: str) -> str:
        """The address Slurm itself uses for ``node`` (NodeAddr), so names need not resolve."""
        try:
            for n in await shared_nodes(self.slurm).get(60):
                if n.name == node:
                    return n.address
        except SlurmError as e:
            self.log.warning("%s: cannot look up node %s: %s", self._log_name, node, e)
        return node

    async def cancel_batch_job(self):
        if not self.job_id:
            return
        self.log.info("%s: cancelling job %s", self._log_name, self.job_id)
        await self.slurm.arun(queries.cancel(int(self.job_id), as_user=self.user.name))
        self.jobs.invalidate()
        self.audit.record(self.user.name, "session.cancel", self._log_name,
                          job_id=int(self.job_id), idle_s=self._idle_seconds())

    def _idle_seconds(self) -> int | None:
        """Seconds since the server's last activity (the hub does not say who stopped it:
        this tells an idle-culled session from one its owner stopped)."""
        last = getattr(self.orm_spawner, "last_activity", None) if self.orm_spawner else None
        if last is None:
            return None
        if last.tzinfo is None:
            last = last.replace(tzinfo=UTC)
        return max(int((datetime.now(UTC) - last).total_seconds()), 0)

    async def _cancel_quietly(self, job_id: str) -> None:
        """scancel a job we give up on (it may still be queued); a job already gone is fine."""
        try:
            await self.slurm.arun(queries.cancel(int(job_id), as_user=self.user.name))
        except SlurmError as e:
            self.log.info("%s: job %s not cancelled: %s", self._log_name, job_id, e.stderr)
