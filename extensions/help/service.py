"""The ``help`` hub service: help requests, the support list with **Join**, and the timer.

API (JSON, under ``/services/help/``; a hub token or the service's OAuth cookie):

- ``POST api/requests`` ``{"message": "...", "notebook": "train.ipynb", "minutes": 120}``:
  share the caller's own running server with the support group for ``minutes`` (30-480);
  ``notebook`` is a path inside that server (:func:`workbench.help.store.check_notebook`);
- ``GET api/requests``: the caller's requests (support: also every open one), with the job,
  node, partition, GPUs and the tail of the job's output;
- ``GET api/requests/{id}``; ``PATCH api/requests/{id}`` ``{"minutes": N}`` (owner: support
  keeps access N minutes from now, 1-480); ``DELETE api/requests/{id}`` (owner or support:
  stop sharing);
- ``POST api/requests/{id}/join`` (support): where to open the owner's JupyterLab;
- ``GET api/access[?server=NAME]``: who has access to the caller's server now (the hub's
  shares, the caller's own named shares included).
- ``GET api/openapi.json``: this API as an OpenAPI 3 document (:mod:`.openapi`).

Bodies are read by :mod:`workbench.webinput` (400, or 413 over 64 KiB); an id no request can
have is 404.

Before it listens, and before every call, the service revokes whatever expired meanwhile
(:meth:`workbench.help.HelpDesk.catch_up`); then it checks every second.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from jupyterhub.utils import exponential_backoff
from tornado import web
from tornado.ioloop import PeriodicCallback
from traitlets import Float, Unicode, default
from traitlets.config import Application

from extensions.help.openapi import DOCUMENT
from extensions.hubservice import APIHandler, OpenAPIHandler, PageHandler, ServiceError, serve
from workbench.audit import AuditLog
from workbench.help import Caller, HelpDesk, HelpError, HubShares
from workbench.help.jobinfo import JOB_OUTPUT
from workbench.help.store import HelpStore
from workbench.paths import FactoryHome
from workbench.slurm import SlurmClient
from workbench.webinput import whole

log = logging.getLogger("extensions.help")
TEMPLATES = Path(__file__).parent / "templates"


class HelpHandler(APIHandler):
    refusals = (*APIHandler.refusals, HelpError)

    @property
    def desk(self) -> HelpDesk:
        return self.settings["desk"]

    @property
    def caller(self) -> Caller:
        return Caller(self.user, frozenset(self.user_groups))

    async def prepare(self):
        await super().prepare()
        await self.settings["catch_up"](full=False)  # nothing expired is served


class RequestsHandler(HelpHandler):
    async def get(self):
        self.write_json({"requests": [self.desk.details(r) for r in
                                      self.desk.visible(self.caller)]})

    async def post(self):
        request = await self.desk.ask(self.caller, self.json_body())
        self.write_json(self.desk.details(request), status=201)


def request_id(text: str) -> int:
    """The id in a request's path; an id no request can have (too many digits) is 404."""
    number = whole(text)
    if number is None:
        raise ServiceError(404, f"no help request {text[:30]}")
    return number


class RequestHandler(HelpHandler):
    async def get(self, rid):
        self.write_json(self.desk.details(self.desk.get(self.caller, request_id(rid))))

    async def patch(self, rid):
        request = await self.desk.change(self.caller, request_id(rid), self.json_body())
        self.write_json(self.desk.details(request))

    async def delete(self, rid):
        request = await self.desk.close(self.caller, request_id(rid))
        self.write_json(self.desk.details(request))


class JoinHandler(HelpHandler):
    async def post(self, rid):
        request = await self.desk.join(self.caller, request_id(rid))
        self.write_json(self.desk.details(request))


class AccessHandler(HelpHandler):
    async def get(self):
        server = self.get_argument("server", "")
        self.write_json({"user": self.user, "server": server,
                         "access": await self.desk.who_has_access(self.user, server)})


class ListPage(PageHandler):
    """The support engineers' list of open requests (and a user's own), with Join."""

    @web.authenticated
    def get(self):
        template = self.settings["templates"].get_template("requests.html")
        xsrf = self.xsrf_token
        self.finish(template.render(user=self.current_user,
                                    xsrf_token=xsrf.decode() if isinstance(xsrf, bytes) else xsrf,
                                    prefix=self.settings["service_prefix"]))


class HelpService(Application):
    """Run the help service (``workbench up`` starts it with the hub's environment)."""

    name = "workbench-help"
    description = __doc__

    db = Unicode(
        help="""The help requests' SQLite file: where their expiry survives restarts.
        Default: the site's database ($WORKBENCH_DATABASE_URL), else
        $AIFACTORY_HOME/hub/help.sqlite. Example: '/var/lib/aifactory/hub/help.sqlite'.""",
    ).tag(config=True)

    @default("db")
    def _default_db(self):
        return FactoryHome.from_env().help_db

    audit_db = Unicode(
        help="""The one audit store (workbench.audit). Default: the site's database
        ($WORKBENCH_DATABASE_URL), else $AIFACTORY_HOME/hub/audit.sqlite.
        Example: '/var/lib/aifactory/hub/audit.sqlite'.""",
    ).tag(config=True)

    @default("audit_db")
    def _default_audit_db(self):
        return FactoryHome.from_env().audit_db

    tick = Float(
        1.0, min=0.2, max=60,
        help="Seconds between checks for expired requests (a database read). Example: 1.0.",
    ).tag(config=True)

    catch_up_every = Float(
        5.0, min=1, max=600,
        help="""Seconds between checks of every open request against the hub (share still
        there, server still running). Example: 5.0.""",
    ).tag(config=True)

    job_output = Unicode(
        JOB_OUTPUT,
        help="""Where a session's output lies ({homedir}: the user's home, %j: the job id), as
        SlurmGPUSpawner.job_output. Example: '{homedir}/.jupyterhub-slurm-%j.log'.""",
    ).tag(config=True)

    slurm_conf = Unicode(
        help="The cluster's slurm.conf. Default: $SLURM_CONF. Example: '/etc/slurm/slurm.conf'.",
    ).tag(config=True)

    aliases = {"db": "HelpService.db", "tick": "HelpService.tick",
               "catch-up-every": "HelpService.catch_up_every",
               "job-output": "HelpService.job_output"}

    def make_desk(self) -> HelpDesk:
        slurm = SlurmClient(slurm_conf=self.slurm_conf or os.environ.get("SLURM_CONF") or None)
        return HelpDesk(HelpStore(self.db), HubShares(), AuditLog(self.audit_db), slurm,
                        job_output=self.job_output,
                        hub_prefix=os.environ.get("JUPYTERHUB_BASE_URL", "/"))

    def start(self):
        desk = self.make_desk()
        lock = asyncio.Lock()

        async def catch_up(full: bool = True):
            async with lock:
                ended = await (desk.catch_up() if full else desk.expire_due())
            for r in ended:
                log.info("help request %s ended: %s", r.id, r.state.value)

        async def before_serving():
            async def try_once():
                try:
                    await catch_up()
                except HelpError as e:
                    log.warning("cannot catch up with the hub yet (%s); not serving", e)
                    return False
                return True
            await exponential_backoff(try_once, "the hub answering the help service",
                                      timeout=600)

        async def tick(full: bool):
            try:
                await catch_up(full)
            except HelpError as e:
                log.warning("help timer: %s (retrying)", e)

        def started():
            PeriodicCallback(lambda: tick(False), self.tick * 1000).start()
            PeriodicCallback(lambda: tick(True), self.catch_up_every * 1000).start()

        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
        settings = {"desk": desk, "catch_up": catch_up, "service_prefix": prefix,
                    "openapi": DOCUMENT,
                    "templates": Environment(loader=FileSystemLoader(TEMPLATES),
                                             autoescape=select_autoescape())}
        serve(ROUTES, settings, before=before_serving, started=started)


ROUTES = [
    (r"api/openapi.json", OpenAPIHandler),
    (r"", ListPage),
    (r"api/requests", RequestsHandler),
    (r"api/requests/([0-9]+)", RequestHandler),
    (r"api/requests/([0-9]+)/join", JoinHandler),
    (r"api/access", AccessHandler),
]


def main(argv=None):
    HelpService.launch_instance(argv)


__all__ = ["HelpService", "ROUTES", "main"]
