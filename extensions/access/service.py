"""The ``access`` hub service: merit-based access to compute time (:mod:`workbench.merit`).

API (JSON, under ``/services/access/``; a hub token or the service's OAuth cookie; every
refusal ``{"message": ..., "field": ...}`` naming the field):

- ``GET api/calls``; ``POST api/calls`` (group ``managers``): open a call;
- ``GET api/calls/{id}``; ``GET api/calls/{id}/proposals``: a manager's ranking, anyone
  else's own proposals; ``POST api/calls/{id}/proposals``: start a draft;
- ``GET api/proposals``: the caller's proposals and those she is to review;
- ``GET|PATCH api/proposals/{id}``; ``POST api/proposals/{id}/submit``;
- ``POST api/proposals/{id}/reviews`` (an assigned reviewer) ``{"scores": {...},
  "comment": ...}``; ``POST api/proposals/{id}/conflict`` ``{"reason": ...}``;
- ``POST api/proposals/{id}/decision`` (managers) ``{"decision": "award", "gpu_hours": 50}``,
  ``{"decision": "reject", "reason": ...}``: an award is applied to Slurm before the answer
  (``slurm`` in it lists what changed);
- ``PUT api/reviewer`` ``{"organisation": ...}`` (group ``reviewers``);
- ``GET api/summary`` (managers): calls, proposals by state, hours from submission to
  decision, awarded against offered and against each programme's share (the manager
  dashboard's Access page);
- ``GET api/openapi.json``: this API as an OpenAPI 3 document (:mod:`.openapi`);
- ``GET`` (the service's root): the page for applicants, reviewers and managers
  (``templates/access.html``), over this API.

Who may do what is the caller's hub groups, as the hub's OAuth gives them (``managers``,
``reviewers``; an admin manages too); the service only reads them. Once listening, it applies
the allocations in force to Slurm (``workbench.enact``), so that an award Slurm could not take
when it was decided reaches it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from tornado import web
from traitlets import Unicode, default
from traitlets.config import Application

from extensions.access.openapi import DOCUMENT
from extensions.hubservice import APIHandler, OpenAPIHandler, PageHandler, serve
from workbench.allocations import AllocationError
from workbench.audit import AuditLog
from workbench.merit import Caller, MeritError, MeritStore, Office
from workbench.merit.ledger import REVIEWERS
from workbench.paths import FactoryHome
from workbench.slurm import SlurmClient, SlurmError
from workbench.slurm.snapshot import NodeSnapshot
from workbench.webinput import whole

log = logging.getLogger("extensions.access")
TEMPLATES = Path(__file__).parent / "templates"
#: how old the machine's nodes (its GPUs, which the programmes' shares are of) may be, in s
NODES_MAX_AGE_S = 30.0


class AccessHandler(APIHandler):
    refusals = (*APIHandler.refusals, MeritError)

    @property
    def office(self) -> Office:
        return self.settings["office"]

    @property
    def caller(self) -> Caller:
        return Caller(self.user, frozenset(self.user_groups), self.is_admin)

    async def write_locked(self, step, *args):
        """Run a step that writes, one at a time, off the event loop (an award waits for
        Slurm)."""
        async with self.settings["write_lock"]:
            return await asyncio.to_thread(step, *args)


def ident(text: str, what: str) -> int:
    number = whole(text)
    if number is None:
        raise MeritError(404, f"no {what} {text[:30]}", what)
    return number


class CallsHandler(AccessHandler):
    def get(self):
        self.write_json({"calls": [self.office.call_json(c)
                                   for c in self.office.store.calls()]})

    async def post(self):
        call = await self.write_locked(self.office.open_call, self.caller, self.json_body())
        self.write_json(self.office.call_json(call), status=201)


class CallHandler(AccessHandler):
    def get(self, cid):
        self.write_json(self.office.call_json(self.office.store.call(ident(cid, "call"))))


class CallProposalsHandler(AccessHandler):
    def get(self, cid):
        self.write_json(self.office.ranking(self.caller, ident(cid, "call")))

    async def post(self, cid):
        p = await self.write_locked(self.office.new_proposal, self.caller, ident(cid, "call"),
                                    self.json_body())
        self.write_json(p.to_json(), status=201)


class MineHandler(AccessHandler):
    def get(self):
        self.write_json(self.office.mine(self.caller))


class ProposalHandler(AccessHandler):
    def get(self, pid):
        p = self.office.store.proposal(ident(pid, "proposal"))
        self.write_json(self.office.visible(self.caller, p))

    async def patch(self, pid):
        p = await self.write_locked(self.office.edit_proposal, self.caller,
                                    ident(pid, "proposal"), self.json_body())
        self.write_json(p.to_json())


class SubmitHandler(AccessHandler):
    async def post(self, pid):
        p = await self.write_locked(self.office.submit, self.caller, ident(pid, "proposal"))
        self.write_json(p.to_json())


class ReviewsHandler(AccessHandler):
    async def post(self, pid):
        review = await self.write_locked(self.office.review, self.caller,
                                         ident(pid, "proposal"), self.json_body())
        self.write_json(review.to_json(), status=201)


class ConflictHandler(AccessHandler):
    async def post(self, pid):
        chosen = await self.write_locked(self.office.conflict, self.caller,
                                         ident(pid, "proposal"), self.json_body())
        self.write_json({"proposal": int(pid), "reassigned": bool(chosen)})


class DecisionHandler(AccessHandler):
    async def post(self, pid):
        decided = await self.write_locked(self.office.decide, self.caller,
                                          ident(pid, "proposal"), self.json_body())
        self.write_json(decided.to_json())


class SummaryHandler(AccessHandler):
    def get(self):
        self.write_json(self.office.summary(self.caller))


class ReviewerHandler(AccessHandler):
    async def put(self):
        organisation = await self.write_locked(self.office.set_organisation, self.caller,
                                               self.json_body())
        self.write_json({"reviewer": self.user, "organisation": organisation})


class AccessPage(PageHandler):
    """The one page for the three roles: calls and the proposal form (everyone), my
    proposals, the proposals to review (reviewers), opening calls and the ranking with
    award and reject (managers). It calls the JSON API above; what it shows of each role
    is what the API would let the caller do anyway."""

    @web.authenticated
    def get(self):
        user = self.current_user
        caller = Caller(user["name"], frozenset(user.get("groups") or ()),
                        bool(user.get("admin")))
        xsrf = self.xsrf_token
        self.finish(self.settings["templates"].get_template("access.html").render(
            user=user, manager=caller.manager, reviewer=caller.reviewer,
            xsrf_token=xsrf.decode() if isinstance(xsrf, bytes) else xsrf,
            prefix=self.settings["service_prefix"]))


def templates() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape())


def is_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class AccessService(Application):
    """Run the access service (``workbench up`` starts it with the hub's environment)."""

    name = "workbench-access"
    description = __doc__

    db = Unicode(
        help="""Calls, proposals, reviews and awards. Default: the site's database
        ($WORKBENCH_DATABASE_URL), else $AIFACTORY_HOME/hub/merit.sqlite (the awards are
        read from there by every reader of the allocations). Example:
        '/var/lib/aifactory/hub/merit.sqlite'.""",
    ).tag(config=True)

    @default("db")
    def _default_db(self):
        return FactoryHome.from_env().merit_db

    audit_db = Unicode(
        help="""The one audit store (workbench.audit). Default: the site's database
        ($WORKBENCH_DATABASE_URL), else $AIFACTORY_HOME/hub/audit.sqlite.
        Example: '/var/lib/aifactory/hub/audit.sqlite'.""",
    ).tag(config=True)

    @default("audit_db")
    def _default_audit_db(self):
        return FactoryHome.from_env().audit_db

    slurm_conf = Unicode(
        help="The cluster's slurm.conf. Default: $SLURM_CONF. Example: '/etc/slurm/slurm.conf'.",
    ).tag(config=True)

    aliases = {"db": "AccessService.db"}

    def make_office(self) -> Office:
        from workbench.allocations.loader import cached
        from workbench.catalogue import model as catalogue
        from workbench.enact import enact
        from workbench.hubapi import HubAPIError, HubClient

        slurm = SlurmClient(slurm_conf=self.slurm_conf or os.environ.get("SLURM_CONF") or None)
        # the machine's GPUs, for the shares: one sinfo per half minute at most
        nodes = NodeSnapshot(slurm, max_age=NODES_MAX_AGE_S)
        hub = HubClient.from_env()

        def reviewers() -> list[str]:
            """The hub's reviewers group (none while the group does not exist)."""
            try:
                reply = hub.request("GET", f"groups/{REVIEWERS}", ok=None)
            except HubAPIError as e:
                raise MeritError(503, f"the hub does not answer ({e}); try again in a "
                                 "minute") from e
            if reply.status == 404:
                return []
            if reply.status != 200:
                raise MeritError(503, f"the hub refused to list its {REVIEWERS} group: "
                                 f"HTTP {reply.status}: {reply.message}")
            return list((reply.data or {}).get("users") or [])

        def apply() -> list[str]:
            done = enact(slurm)
            if done.data_error:
                log.warning("datasets' access not updated: %s", done.data_error)
            return [*done.slurm, *done.data]

        return Office(store=MeritStore(self.db), audit=AuditLog(self.audit_db),
                      allocations=cached,
                      nodes=nodes.read, is_user=is_user,
                      datasets=lambda: catalogue.load().ids, reviewers=reviewers,
                      enact=apply)

    def start(self):
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
        office, lock = self.make_office(), asyncio.Lock()
        pending = set()

        async def catch_up():
            """An award Slurm could not take when it was decided is applied now (in the
            background: the service answers meanwhile, also while Slurm does not)."""
            try:
                async with lock:
                    changes = await asyncio.to_thread(office.enact)
            except (SlurmError, AllocationError, OSError) as e:
                log.warning("the allocations in force are not applied to Slurm: %s", e)
                return
            for change in changes:
                log.info("applied at start: %s", change)

        def started():
            task = asyncio.ensure_future(catch_up())
            pending.add(task)
            task.add_done_callback(pending.discard)

        serve(ROUTES, {"office": office, "write_lock": lock, "service_prefix": prefix,
                       "openapi": DOCUMENT, "templates": templates()}, started=started)


ROUTES = [
    (r"api/openapi.json", OpenAPIHandler),
    (r"", AccessPage),
    (r"api/calls", CallsHandler),
    (r"api/calls/([0-9]+)", CallHandler),
    (r"api/calls/([0-9]+)/proposals", CallProposalsHandler),
    (r"api/proposals", MineHandler),
    (r"api/proposals/([0-9]+)", ProposalHandler),
    (r"api/proposals/([0-9]+)/submit", SubmitHandler),
    (r"api/proposals/([0-9]+)/reviews", ReviewsHandler),
    (r"api/proposals/([0-9]+)/conflict", ConflictHandler),
    (r"api/proposals/([0-9]+)/decision", DecisionHandler),
    (r"api/reviewer", ReviewerHandler),
    (r"api/summary", SummaryHandler),
]


def main(argv=None):
    AccessService.launch_instance(argv)


__all__ = ["ROUTES", "AccessService", "main"]
