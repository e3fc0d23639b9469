"""``SlurmGPUSpawner``: notebook servers as Slurm jobs on GPU nodes, submitted as the user.

Builds on ``batchspawner.SlurmSpawner`` (its state keeping, ``req_*`` traits and the
``batchspawner-singleuser`` port callback), and replaces what the field notes list as broken:

- every Slurm call goes through :mod:`workbench.slurm` (argv lists, typed results) and all
  sessions of the hub share one ``squeue`` snapshot;
- ``user_options`` are validated against the live cluster (:mod:`workbench.resources`)
  before anything is submitted: a bad request is an HTTP 400 naming the field, and no job;
- the job script comes from ``templates/job.sh.j2`` with validated values only;
- the port callback accepts a port and nothing else (:mod:`spawners.api`);
- a transient Slurm error reads as "unknown", never as "job gone";
- failures are ``SpawnException`` messages that say what happened and what to do.

Select it with ``c.JupyterHub.spawner_class = "slurm-gpu"``.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import socket
import sys
from pathlib import Path

import jinja2
from batchspawner import JobStatus, SlurmSpawner
from jupyterhub.spawner import SpawnException
from traitlets import Float, Unicode, default

from workbench.allocations import AllocationError, Allocations, abudgets
from workbench.allocations import default_path as default_allocations_path
from workbench.audit import AuditLog
from workbench.paths import FactoryHome
from workbench.resources import ClusterView, InvalidRequest, defaults, validate_request
from workbench.slurm import Job, JobState, SlurmClient, SlurmError, SlurmUnavailable, queries
from workbench.slurm.snapshot import shared_snapshot

from . import api, form

api.install()

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
)
_TEMPLATES.filters["shquote"] = shlex.quote

#: Slurm's pending reasons in plain words
PENDING_REASONS = {
    "None": "just submitted; the scheduler has not looked at it yet",
    "Priority": "other jobs are ahead of yours in the queue",
    "Resources": "waiting for the GPUs, CPUs or memory you asked for to free up",
    "QOSMaxGRESPerUser": "your quality of service allows no more GPUs at once",
    "AssocGrpGRESMinutes": "your project has used up its GPU-hour grant",
    "AssocGrpGRES": "your project has as many GPUs as it may use at once",
    "ReqNodeNotAvail": "the nodes you need are unavailable (down, drained or reserved)",
    "PartitionTimeLimit": "the walltime is over the partition's limit",
    "Dependency": "waiting for another job to finish",
    "BeginTime": "waiting for its start time",
    "JobHeldUser": "held by you",
    "JobHeldAdmin": "held by an operator",
}


def describe_pending(reason: str) -> str:
    if reason in PENDING_REASONS:
        return PENDING_REASONS[reason]
    if reason.startswith(("QOS", "Assoc")):
        return f"a project or QOS limit holds it ({reason})"
    return reason or "waiting"


def render_job_script(request, *, user: str, server: str, tag: str, homedir: str, output: str,
                      env_names, env_path: str, prologue: str, argv: list[str]) -> str:
    """The batch script of a notebook server job, from ``templates/job.sh.j2``.

    ``request`` is a validated :class:`~workbench.resources.ResourceRequest`; the rest comes
    from the hub's config. ``env_names`` are the variables the job keeps (``--export``).
    """
    return _TEMPLATES.get_template("job.sh.j2").render(
        job_name=f"jupyter-{user}" + (f"-{server}" if server else ""), tag=tag,
        request=request, homedir=homedir, output=output, keepvars=",".join(sorted(env_names)),
        env_path=env_path, prologue=prologue, cmd=" ".join(shlex.quote(a) for a in argv))


async def _nothing() -> list:
    return []


async def _apply_user_options(spawner: SlurmGPUSpawner, user_options: dict) -> None:
    await spawner.validate_options(user_options)


class SlurmGPUSpawner(SlurmSpawner):
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
        help="Seconds one shared squeue snapshot serves every session of this hub before "
        "it is refreshed. Example: 1.0.",
    ).tag(config=True)

    default_partition = Unicode(
        "gpu",
        help="Partition the spawn form preselects (and the REST API uses when none is "
        "given). Example: 'gpu'.",
    ).tag(config=True)

    env_bin = Unicode(
        help="""bin directory of the single-user environment (jupyterhub-singleuser,
        batchspawner-singleuser); it must be readable by every user on the compute nodes.
        Default: the hub's own interpreter's directory. Example: '/opt/aifactory/venv/bin'.""",
    ).tag(config=True)

    @default("env_bin")
    def _default_env_bin(self):
        return str(Path(sys.executable).parent)

    hub_id = Unicode(
        help="""Name of this hub in the tag every job carries (job comment), so that a hub
        recognises its own jobs. Default: the hub machine's host name. Example: 'hub1'.""",
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

    allocations_file = Unicode(
        None, allow_none=True,
        help="""The allocations file (programmes, projects, GPU-hour grants) whose budgets the
        form shows and requests are checked against. None (default): looked up at each spawn,
        AIFACTORY_HOME/etc/allocations.yaml if present, else the demo file. Empty: no budget
        check in the hub (Slurm still enforces its limits).
        Example: '/etc/aifactory/allocations.yaml'.""",
    ).tag(config=True)

    audit_db = Unicode(
        help="SQLite file of the audit log. Default: AIFACTORY_HOME/hub/audit.sqlite. "
        "Example: '/var/lib/aifactory/hub/audit.sqlite'.",
    ).tag(config=True)

    @default("audit_db")
    def _default_audit_db(self):
        return str(FactoryHome.from_env().audit_db)

    # -- inherited defaults ----------------------------------------------------------------

    @default("batchspawner_singleuser_cmd")
    def _default_singleuser_wrapper(self):
        return str(Path(self.env_bin) / "batchspawner-singleuser")

    @default("cmd")
    def _default_cmd(self):
        return [str(Path(self.env_bin) / "jupyterhub-singleuser")]

    @default("default_url")
    def _default_default_url(self):
        return "/lab"

    @default("http_timeout")
    def _default_http_timeout(self):
        return 120

    @default("options_form")
    def _default_options_form(self):
        return SlurmGPUSpawner.render_options_form

    @default("options_from_form")
    def _default_options_from_form(self):
        return form.options_from_form

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return _apply_user_options

    # -- state -----------------------------------------------------------------------------

    request = None  # the validated ResourceRequest of the current start
    job: Job | None = None  # the job as the last snapshot saw it
    _port_event: asyncio.Event | None = None

    @property
    def slurm(self) -> SlurmClient:
        return SlurmClient(slurm_conf=self.slurm_conf or None, bindir=self.slurm_bindir or None,
                           timeout=self.slurm_timeout)

    @property
    def audit(self) -> AuditLog:
        return AuditLog(self.audit_db)

    @property
    def job_tag(self) -> str:
        return f"workbench:hub={self.hub_id}:user={self.user.name}:server={self.name or ''}"

    def get_env(self):
        env = super().get_env()
        if self.slurm_conf:
            env["SLURM_CONF"] = self.slurm_conf
        return env

    # -- the form and validation -----------------------------------------------------------

    def allocations(self) -> Allocations | None:
        if self.allocations_file == "":
            return None
        path = Path(self.allocations_file or default_allocations_path())
        try:
            return Allocations.load(path, check_users=False)
        except AllocationError as e:
            self.log.error("%s: allocations file unusable, budgets not shown: %s",
                           self._log_name, e)
            return None

    async def cluster_view(self) -> ClusterView:
        """Partitions, GPU types, this user's accounts and their GPU-hours, from Slurm now."""
        allocs = self.allocations()
        nodes, parts, assocs, budgets = await asyncio.gather(
            self.slurm.arun(queries.nodes()),
            self.slurm.arun(queries.partitions()),
            self.slurm.arun(queries.associations(self.user.name)),
            abudgets(allocs, self.slurm) if allocs else _nothing(),
        )
        return ClusterView.build(nodes, parts, assocs, self.user.name, budgets)

    async def render_options_form(self) -> str:
        try:
            view = await self.cluster_view()
        except SlurmError as e:
            self.log.warning("%s: cannot build the spawn form: %s", self._log_name, e)
            return ('<p class="alert alert-danger">The cluster is not answering right now, so '
                    "no server can be started. Try again in a minute; if it persists, tell "
                    "the AI Factory's support.</p>")
        current = defaults(view, self.default_partition)
        previous = self.orm_spawner.user_options if self.orm_spawner else None
        if previous:
            try:
                current = validate_request(previous, view, self.default_partition).as_options()
            except InvalidRequest:
                pass  # last time's options no longer fit this cluster: offer the defaults
        return form.render_form(view, current)

    async def validate_options(self, user_options: dict) -> None:
        """Validate ``user_options`` against the live cluster; HTTP 400 if they do not fit."""
        try:
            view = await self.cluster_view()
        except SlurmError as e:
            raise SpawnException(
                "The cluster is not answering, so your request cannot be checked. "
                "Try again in a minute.", reason="slurm-unavailable", status_code=503,
                log_message=f"cluster view failed: {e}") from e
        try:
            self.request = validate_request(user_options or {}, view, self.default_partition)
        except InvalidRequest as e:
            self.audit.record(self.user.name, "session.refused", self._log_name,
                              field=e.field, message=e.message)
            raise SpawnException(f"Invalid {e.field}: {e.message}", reason="invalid-options",
                                 status_code=400) from None

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
        self.log.info("%s: submitted job %s (%s)", self._log_name, job_id,
                      self.request.as_options())
        self.audit.record(self.user.name, "session.submit", self._log_name, job_id=job_id,
                          **self.request.as_options())
        return self.job_id

    async def query_job_status(self):
        if not self.job_id:
            self.job = None
            return JobStatus.NOTFOUND
        try:
            jobs = await shared_snapshot(self.slurm, self.snapshot_max_age).jobs()
        except SlurmUnavailable as e:
            self.log.warning("%s: Slurm unavailable, job %s state unknown: %s",
                             self._log_name, self.job_id, e)
            return JobStatus.UNKNOWN
        except SlurmError as e:
            self.log.warning("%s: squeue failed for job %s: %s", self._log_name, self.job_id, e)
            return JobStatus.UNKNOWN
        self.job = jobs.get(int(self.job_id))
        if self.job is None:
            return JobStatus.NOTFOUND
        self.job_status = f"{self.job.state.value} {self.job.batch_host}".strip()
        if self.job.state.is_running:
            return JobStatus.RUNNING
        if self.job.state.is_pending:
            return JobStatus.PENDING
        if self.job.state in (JobState.SUSPENDED, JobState.UNKNOWN):
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
            for n in await self.slurm.arun(queries.nodes()):
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
        self.audit.record(self.user.name, "session.cancel", self._log_name,
                          job_id=int(self.job_id))

    def port_reported(self, port: int) -> None:
        """Called by the port callback handler."""
        if self._port_event is not None:
            self._port_event.set()

    async def ended_message(self, job_id: str) -> str:
        """Why a job is gone, from squeue's last view or from accounting."""
        state, detail = "", ""
        if self.job is not None and int(self.job_id or 0) == int(job_id):
            state, detail = self.job.state.value, self.job.reason
        try:
            end = await self.slurm.arun(queries.job_end(int(job_id)))
        except SlurmError:
            end = None
        if end:
            state, detail = end[0].value, f"exit code {end[1]}"
        log = self.job_output.format(homedir=self.req_homedir).replace("%j", job_id)
        return (f"Your notebook job {job_id} ended before the server was ready "
                f"({state or 'gone from the queue'}{', ' + detail if detail else ''}). "
                f"Its output is in {log}. Check your request and start again.")

    async def start(self):
        self.port = 0
        self.job = None
        self._port_event = asyncio.Event()
        await self.submit_batch_script()
        job_id = self.job_id
        loop = asyncio.get_running_loop()
        # leave a margin inside the hub's own start_timeout to cancel and explain
        deadline = loop.time() + max(self.start_timeout - 10, 5)
        delay = 0.1
        while not (self.port and self.job and self.job.state.is_running):
            status = await self.query_job_status()
            if status == JobStatus.NOTFOUND:
                message = await self.ended_message(job_id)
                self.clear_state()
                raise SpawnException(message, reason="job-ended", status_code=500)
            if loop.time() > deadline:
                reason = describe_pending(self.job.reason) if self.job else "state unknown"
                await self.cancel_batch_job()
                self.clear_state()
                raise SpawnException(
                    f"Your job {job_id} did not start within {self.start_timeout} s "
                    f"({reason}) and was cancelled. Ask for fewer GPUs, another partition or "
                    "GPU type, or a shorter walltime, and start again.", reason="queue-timeout")
            # the port callback wakes us at once; otherwise back off up to 2 s
            try:
                await asyncio.wait_for(self._port_event.wait(), delay)
            except TimeoutError:
                delay = min(delay * 2, 2.0)
        self.ip = await self.node_address(self.state_gethost())
        self.log.info("%s: job %s running on %s, server at %s:%s", self._log_name, job_id,
                      self.job.batch_host, self.ip, self.port)
        return self.ip, self.port

    async def stop(self, now=False):
        if not self.job_id:
            return
        await self.cancel_batch_job()
        if now:
            return
        delay = 0.2
        for _ in range(8):  # ~10 s in all
            if await self.query_job_status() not in (JobStatus.RUNNING, JobStatus.UNKNOWN):
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        self.log.warning("%s: job %s still running after scancel", self._log_name, self.job_id)

    async def progress(self):
        """Real state from the shared snapshot: queue reason while pending, node once running."""
        last = None
        while True:
            job = self.job
            if job is None:
                msg = {"progress": 10, "message": "Submitting your job to Slurm..."}
            elif job.state.is_pending:
                msg = {"progress": 30, "message":
                       f"Job {job.job_id} pending in partition {job.partition}: "
                       f"{describe_pending(job.reason)}"}
            elif job.state.is_running and not self.port:
                msg = {"progress": 70, "message":
                       f"Job {job.job_id} running on {job.batch_host}; starting JupyterLab..."}
            else:
                msg = {"progress": 90, "message": "JupyterLab is up; connecting..."}
            if msg != last:
                yield msg
                last = msg
            if job is not None and job.state.is_running and self.port:
                return
            await asyncio.sleep(1)
