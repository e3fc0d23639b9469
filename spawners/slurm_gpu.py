"""``SlurmGPUSpawner``: notebook servers as Slurm jobs on GPU nodes, submitted as the user.

Builds on ``batchspawner.SlurmSpawner`` (its ``req_*`` traits, job state, the port
callback route), and replaces what the field notes list as broken:

- every Slurm call goes through :mod:`workbench.slurm` (argv lists, typed results) and all
  sessions of the hub share one ``squeue`` snapshot: calls do not grow with sessions;
- ``user_options`` are validated against the live cluster and the project's GPU-hours
  (:mod:`workbench.resources`) before anything is submitted: a bad request is an HTTP 400
  naming the field, and no job;
- the job script comes from ``templates/job.sh.j2`` with validated values only;
- the job id is written to the hub database the moment ``sbatch`` returns, the port the moment
  the job reports it: a hub restarted (even ``kill -9``) during a spawn carries the spawn on;
- the job reports its port the moment its server listens (:mod:`spawners.singleuser`); the
  port callback accepts a port and nothing else (:mod:`spawners.api`);
- a transient Slurm error reads as "unknown" for up to ``unknown_grace`` seconds, never as
  "job gone";
- waiting shows Slurm's reason, the queue position, the estimated start and how to start
  sooner; failures are ``SpawnException`` messages that say what happened and what to do; a
  session that ends says why on the user's next visit to the spawn page
  (:mod:`spawners.feedback`).

Select it with ``c.JupyterHub.spawner_class = "slurm-gpu"``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import sys
import time
from pathlib import Path

from batchspawner import JobStatus, SlurmSpawner
from jupyterhub.spawner import SpawnException
from sqlalchemy.orm import object_session
from traitlets import Callable, Dict, Float, Integer, List, Unicode, Union, default

from workbench.audit import AuditLog
from workbench.paths import FactoryHome
from workbench.queue import waiting_message
from workbench.scaling.ownership import cancel_session_workers
from workbench.slurm import Job, JobState, SlurmClient, SlurmError, queries
from workbench.slurm.snapshot import shared_nodes, shared_snapshot
from workbench.tags import job_tag

from .feedback import SessionFeedbackMixin
from .jobscript import render_job_script
from .options import ClusterOptionsMixin


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest() if token else ""


class SlurmGPUSpawner(ClusterOptionsMixin, SessionFeedbackMixin, SlurmSpawner):
    """Spawn notebook servers as Slurm jobs on GPU partitions, from a form built from the
    live cluster. See the module docstring for what differs from ``SlurmSpawner``."""

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

    poll_snapshot_age = Float(
        15.0, min=0.0,
        help="Seconds of age a liveness poll (every poll_interval) accepts from the shared "
        "squeue snapshot: however many sessions, at most one squeue per this many seconds "
        "for polling. Example: 15.",
    ).tag(config=True)

    unknown_grace = Float(
        600.0, min=0.0,
        help="Seconds a running session may stay 'unknown' (Slurm not answering) before the "
        "hub reports it stopped. A controller restart must not end sessions. Example: 600.",
    ).tag(config=True)

    not_found_grace = Float(
        10.0, min=0.0,
        help="Seconds after sbatch during which a job missing from squeue counts as not yet "
        "visible rather than ended. Example: 10.",
    ).tag(config=True)

    walltime_warning_s = Integer(
        900, min=0,
        help="Seconds before the end of a session's walltime from which the hub's home page "
        "warns that it ends soon (and offers to extend it). Example: 900.",
    ).tag(config=True)

    env_bin = Unicode(
        help="""bin directory of the single-user environment (jupyterhub-singleuser,
        workbench-singleuser); it must be readable by every user on the compute nodes.
        Default: the hub's own interpreter's directory. Example: '/opt/aifactory/venv/bin'.""",
    ).tag(config=True)

    @default("env_bin")
    def _default_env_bin(self):
        return str(Path(sys.executable).parent)

    hub_id = Unicode(
        help="""Name of this hub in the tag every job carries (job comment), so that a hub
        recognises its own jobs (orphans are cancelled by `workbench reconcile`). Default:
        the hub machine's host name. Example: 'hub1'.""",
    ).tag(config=True)

    @default("hub_id")
    def _default_hub_id(self):
        return socket.gethostname()

    job_output = Unicode(
        "{homedir}/.jupyterhub-slurm-%j.log",
        help="Where the job's output goes; {homedir} is the user's home and %j the job id. "
        "Example: '{homedir}/.jupyterhub-slurm-%j.log'.",
    ).tag(config=True)

    job_prologue = Unicode(
        "",
        help="Shell lines run in the job before the server starts (site config, trusted). "
        "Example: 'module load cuda/12'.",
    ).tag(config=True)

    audit_db = Unicode(
        help="SQLite file of the audit log. Default: AIFACTORY_HOME/hub/audit.sqlite. "
        "Example: '/var/lib/aifactory/hub/audit.sqlite'.",
    ).tag(config=True)

    @default("audit_db")
    def _default_audit_db(self):
        return str(FactoryHome.from_env().audit_db)

    # -- inherited defaults ----------------------------------------------------------------

    batchspawner_singleuser_cmd = Unicode(
        help="""The launcher the job runs the server with: it picks a port and reports it to
        the hub. Default: workbench-singleuser in env_bin, which reports the port the moment
        the server listens (spawners/singleuser.py); batchspawner-singleuser works too, ~0.6 s
        slower. Example: '/opt/aifactory/venv/bin/workbench-singleuser'.""",
    ).tag(config=True)

    @default("batchspawner_singleuser_cmd")
    def _default_singleuser_wrapper(self):
        return str(Path(self.env_bin) / "workbench-singleuser")

    @default("cmd")
    def _default_cmd(self):
        return [str(Path(self.env_bin) / "jupyterhub-singleuser")]

    @default("default_url")
    def _default_default_url(self):
        return "/lab"

    @default("http_timeout")
    def _default_http_timeout(self):
        return 120

    server_token_scopes = Union(
        [List(Unicode()), Callable()],
        help="""Scopes of the server's own token (JUPYTERHUB_API_TOKEN), or a callable given
        the spawner. Default: the `server` role's (users:activity!user,
        access:servers!server) plus read:servers!server and servers!server, so that
        JupyterLab can show and extend the session's walltime (extensions/walltime) and do
        nothing else to other servers. Example: ['users:activity!user',
        'access:servers!server'] (JupyterHub's default: no walltime in JupyterLab).""",
    ).tag(config=True)

    @default("server_token_scopes")
    def _default_server_token_scopes(self):
        return ["access:servers!server", "users:activity!user", "read:servers!server",
                "servers!server",
                *(f"access:services!service={name}" for name in self.user_services)]

    @default("oauth_client_allowed_scopes")
    def _default_oauth_client_allowed_scopes(self):
        # jupyter-collaboration's share dialog: the owner's browser token may name users and
        # share this user's servers; a sharee's token never gets these (not theirs to hold)
        return ["read:users:name", "list:users", f"shares!user={self.user.name}"]

    user_services = Dict(
        value_trait=Unicode(),
        help="""Hub services a session may call with its own token, by name: the URL a
        compute node reaches each at, prefix included. Sessions get it as the JSON
        environment variable AIFACTORY_SERVICES (the `aifactory` module reads it), and the
        default server_token_scopes grant access:services!service=NAME for each (within what
        the user's roles allow). Example: {"catalogue":
        "http://10.0.0.5:8091/services/catalogue/"}. Default: none.""",
    ).tag(config=True)

    # -- state -----------------------------------------------------------------------------

    request = None  # the validated ResourceRequest of the current start
    job: Job | None = None  # the job as the last snapshot saw it
    token_sha256 = ""  # the server token's digest: the port callback finds us after a restart
    _port_event: asyncio.Event | None = None
    _unknown_since: float | None = None
    _submitted_at = float("-inf")
    _ready_once = False

    @property
    def slurm(self) -> SlurmClient:
        return SlurmClient(slurm_conf=self.slurm_conf or None, bindir=self.slurm_bindir or None,
                           timeout=self.slurm_timeout)

    @property
    def jobs(self):
        return shared_snapshot(self.slurm, self.snapshot_max_age)

    @property
    def audit(self) -> AuditLog:
        return AuditLog(self.audit_db)

    @property
    def job_tag(self) -> str:
        return job_tag(self.hub_id, self.user.name, self.name or "")

    def get_env(self):
        env = super().get_env()
        if self.slurm_conf:
            env["SLURM_CONF"] = self.slurm_conf
        if self.user_services:
            env["AIFACTORY_SERVICES"] = json.dumps(self.user_services)
        return env

    def get_state(self):
        state = super().get_state()
        if self.job_id:
            if self.port:
                state["port"] = self.port
            digest = token_digest(self.api_token) or self.token_sha256
            if digest:
                state["token_sha256"] = digest
        if self.last_end:
            state["last_end"] = self.last_end
        return state

    def load_state(self, state):
        super().load_state(state)
        self.port = int(state.get("port", 0))
        self.token_sha256 = state.get("token_sha256", "")
        self.last_end = state.get("last_end")

    def clear_state(self):
        """Forget the job; keep ``last_end`` so the next visit can say how it ended."""
        super().clear_state()
        self.port = 0
        self.token_sha256 = ""
        self.job = None
        self._unknown_since = None

    def persist_state(self) -> None:
        """Write the state to the hub database now, not when start() returns."""
        orm_spawner = self.orm_spawner
        if orm_spawner is None:
            return
        orm_spawner.state = self.get_state()
        session = object_session(orm_spawner)
        if session is not None:
            session.commit()

    def owns_token(self, token: str) -> bool:
        """Whether ``token`` is this server's (also after a hub restart, by digest)."""
        if self.api_token:
            return token == self.api_token
        return bool(self.token_sha256) and token_digest(token) == self.token_sha256

    # -- the job ---------------------------------------------------------------------------

    def render_script(self) -> str:
        argv = [self.batchspawner_singleuser_cmd, *self.cmd, *self.get_args()]
        return render_job_script(
            self.request, user=self.user.name, server=self.name, tag=self.job_tag,
            homedir=self.req_homedir, output=self.job_output.format(homedir=self.req_homedir),
            env_names=self.get_env(), env_path=self.env_bin, prologue=self.job_prologue,
            argv=argv)

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
                          job_id=int(self.job_id))

    def port_reported(self, port: int) -> None:
        """Called by the port callback handler: remember the port, durably, and wake start()."""
        self.port = port
        self.persist_state()
        self.jobs.invalidate()  # the job runs now; the next look must see it
        if self._port_event is not None:
            self._port_event.set()

    async def _wait_ready(self, deadline: float) -> None:
        """Until the job runs and its server listens on the port it reported; SpawnException
        if the job ends first or ``deadline`` (event-loop time) passes, in which case the job
        is cancelled."""
        loop = asyncio.get_running_loop()
        job_id = self.job_id
        if self._port_event is None:
            self._port_event = asyncio.Event()
        delay = 0.1
        while not (self.port and self.job and self.job.state.is_running):
            status = await self.query_job_status()
            if status == JobStatus.NOTFOUND and not (
                    self.job is None and loop.time() < self._submitted_at + self.not_found_grace):
                end = await self.record_end(job_id)
                await self._cancel_quietly(job_id)
                self.clear_state()
                raise SpawnException(self.describe_end(end) + " Check your request and start "
                                     "again.", reason="job-ended", status_code=500)
            if loop.time() > deadline:
                why = waiting_message(self.job, (await self.jobs.jobs()).values()) \
                    if self.job and self.job.state.is_pending else "its server did not report"
                await self.cancel_batch_job()
                self.last_end = None
                self.clear_state()
                raise SpawnException(
                    f"Your job {job_id} did not start within {self.start_timeout} s and was "
                    f"cancelled. {why} Ask for fewer GPUs, another partition or GPU type, or "
                    "a shorter walltime, and start again.", reason="queue-timeout")
            if self._port_event.is_set():
                # the server called back, so the job runs: look again now, not in `delay`
                self._port_event.clear()
                continue
            try:
                await asyncio.wait_for(self._port_event.wait(), delay)
            except TimeoutError:
                delay = min(delay * 2, 2.0)
        await self._wait_listening(deadline)

    async def _wait_listening(self, deadline: float) -> None:
        """Until the server accepts connections, checked every 20-200 ms, so the hub's own
        first check (with its randomised back-off) finds it up."""
        loop = asyncio.get_running_loop()
        host = await self.node_address(self.job.batch_host)
        delay = 0.02
        while loop.time() < deadline:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, self.port), 2)
            except (TimeoutError, OSError):
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 0.2)
                continue
            writer.close()
            return

    async def _cancel_quietly(self, job_id: str) -> None:
        """scancel a job we give up on (it may still be queued); a job already gone is fine."""
        try:
            await self.slurm.arun(queries.cancel(int(job_id), as_user=self.user.name))
        except SlurmError as e:
            self.log.info("%s: job %s not cancelled: %s", self._log_name, job_id, e.stderr)

    async def start(self):
        self.port = 0
        self.job = None
        self.last_end = None
        self._ready_once = False
        self._port_event = asyncio.Event()
        await self.submit_batch_script()
        loop = asyncio.get_running_loop()
        # leave a margin inside the hub's own start_timeout to cancel and explain
        await self._wait_ready(loop.time() + max(self.start_timeout - 10, 5))
        self.ip = await self.node_address(self.state_gethost())
        self._ready_once = True
        self.log.info("%s: job %s running on %s, server at %s:%s", self._log_name,
                      self.job_id, self.job.batch_host, self.ip, self.port)
        return self.ip, self.port

    async def get_url(self):
        """After a hub restart: where the re-adopted job's server really is."""
        if self.port and self.job and self.job.batch_host:
            ip = await self.node_address(self.job.batch_host)
            return f"http://{ip}:{self.port}{self.server.base_url}"
        return await super().get_url()

    async def poll(self):
        """None while the job lives; 1 (with ``last_end`` recorded) once it is gone.

        Liveness polls share one squeue per ``poll_snapshot_age``. When the hub restarted
        during this server's start, the start is carried on here (JupyterHub checks spawners
        at start-up with ``poll()``, in the background after ``init_spawners_timeout``).
        """
        status = await self.query_job_status(self.poll_snapshot_age)
        now = time.monotonic()
        if status == JobStatus.UNKNOWN:
            self._unknown_since = self._unknown_since or now
            if now - self._unknown_since < self.unknown_grace:
                return None
            self.last_end = self.unanswered_end(self.unknown_grace)
            self.clear_state()
            return 1
        self._unknown_since = None
        if status in (JobStatus.PENDING, JobStatus.RUNNING):
            if self._check_pending and not self._ready_once and not (
                    status == JobStatus.RUNNING and self.port):
                self.log.info("%s: hub restarted during the start of job %s; carrying on",
                              self._log_name, self.job_id)
                self.audit.record(self.user.name, "session.readopted", self._log_name,
                                  job_id=int(self.job_id))
                loop = asyncio.get_running_loop()
                await self._wait_ready(loop.time() + self.start_timeout)
            self._ready_once = True
            return None
        if self.job_id:
            await self.record_end(self.job_id)
        self.clear_state()
        return 1

    async def stop(self, now=False):
        if not self.job_id:
            return
        try:  # the session's Dask workers and torch runs end with it (workbench.scaling)
            cancelled = await cancel_session_workers(
                self.slurm, (await self.jobs.jobs(0)).values(), self.job_tag, int(self.job_id),
                as_user=self.user.name)
            if cancelled:
                self.audit.record(self.user.name, "session.workers-cancelled", self._log_name,
                                  job_id=int(self.job_id), workers=cancelled)
        except SlurmError as e:
            self.log.warning("%s: workers of job %s not looked up: %s", self._log_name,
                             self.job_id, e)
        try:
            await self.cancel_batch_job()
        except SlurmError as e:
            self.log.error("%s: scancel of job %s failed: %s", self._log_name, self.job_id, e)
            return
        if now:
            return
        delay = 0.2
        for _ in range(8):  # ~10 s in all
            if await self.query_job_status(0) not in (JobStatus.RUNNING, JobStatus.UNKNOWN):
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        self.log.warning("%s: job %s still running after scancel", self._log_name, self.job_id)
