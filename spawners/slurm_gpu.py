"""``SlurmGPUSpawner``: notebook servers as Slurm jobs on GPU nodes, submitted as the user.

Builds on ``batchspawner.SlurmSpawner`` (its ``req_*`` traits, job state, the port
callback route), and replaces what the field notes list as broken:

- every Slurm call goes through :mod:`workbench.slurm` (argv lists, typed results) and all
  sessions of the hub share one ``squeue`` snapshot: calls do not grow with sessions
  (:mod:`spawners.slurmjob`);
- ``user_options`` are validated against the live cluster and the project's GPU-hours
  (:mod:`workbench.resources`) before anything is submitted: a bad request is an HTTP 400
  naming the field, and no job (:mod:`spawners.options`);
- the job script comes from ``templates/job.sh.j2`` with validated values only;
- the job id is written to the hub database the moment ``sbatch`` returns, the port the moment
  the job reports it: a hub restarted (even ``kill -9``) during a spawn carries the spawn on
  (:mod:`spawners.state`, :mod:`spawners.readiness`);
- the job reports its port the moment its server listens (:mod:`spawners.singleuser`); the
  port callback accepts a port and nothing else (:mod:`spawners.api`);
- a transient Slurm error reads as "unknown" for up to ``unknown_grace`` seconds, never as
  "job gone" (:mod:`spawners.readiness`);
- waiting shows Slurm's reason, the queue position, the estimated start and how to start
  sooner; failures are ``SpawnException`` messages that say what happened and what to do; a
  session that ends says why on the user's next visit to the spawn page
  (:mod:`spawners.feedback`).

This module holds the spawner's own options and its start and stop; each mixin above holds
one job, and its options are configured under this class's name too
(``c.SlurmGPUSpawner.unknown_grace``). Select it with
``c.JupyterHub.spawner_class = "slurm-gpu"``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

from batchspawner import SlurmSpawner
from traitlets import Callable, Dict, Integer, List, Unicode, Union, default

from workbench.audit import AuditLog
from workbench.paths import FactoryHome
from workbench.scaling.ownership import cancel_session_workers
from workbench.slurm import SlurmError
from workbench.tags import job_tag

from .feedback import SessionFeedbackMixin
from .jobscript import render_job_script
from .options import ClusterOptionsMixin
from .readiness import ReadinessMixin
from .slurmjob import SlurmJobMixin
from .state import SessionStateMixin


class SlurmGPUSpawner(ClusterOptionsMixin, SessionFeedbackMixin, SessionStateMixin,
                      ReadinessMixin, SlurmJobMixin, SlurmSpawner):
    """Spawn notebook servers as Slurm jobs on GPU partitions, from a form built from the
    live cluster. See the module docstring for what differs from ``SlurmSpawner``."""

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
        help="The audit store: a SQLite file or a SQLAlchemy URL. Default: the site's "
        "database ($WORKBENCH_DATABASE_URL), else AIFACTORY_HOME/hub/audit.sqlite. "
        "Example: '/var/lib/aifactory/hub/audit.sqlite'.",
    ).tag(config=True)

    @default("audit_db")
    def _default_audit_db(self):
        return FactoryHome.from_env().audit_db

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

    # -- the session -----------------------------------------------------------------------

    request = None  # the validated ResourceRequest of the current start

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

    # -- the job ---------------------------------------------------------------------------

    def render_script(self) -> str:
        argv = [self.batchspawner_singleuser_cmd, *self.cmd, *self.get_args()]
        return render_job_script(
            self.request, user=self.user.name, server=self.name, tag=self.job_tag,
            homedir=self.req_homedir, output=self.job_output.format(homedir=self.req_homedir),
            env_names=self.get_env(), env_path=self.env_bin, prologue=self.job_prologue,
            argv=argv)

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
        await self._wait_stopped()
