"""The help desk: what the ``help`` service does for each call, and its timer.

A request is addressed to the support group: every member sees it; the one who **joins** gets
a share of that one server (``access:servers!server=alice/``, a share with that user: the
hub's sharing API, the same as alice's own named shares). Group shares are not used: in
JupyterHub 6.1.1 a group's shares reach its members' hub sessions but not their tokens (OAuth
tokens of a browser included), so a group share would not let a support engineer's browser in.

Every change goes store first, hub second, audit third, in an order that a crash at any point
leaves safe: a request and who joined it are stored (with its expiry) *before* a share is
granted, so no share ever exists without a durable end; shares are revoked *before* the
request is marked ended, so an ended request never leaves a share behind.
:meth:`HelpDesk.catch_up` (run before the service serves anything, then every few seconds)
revokes what expired meanwhile and notices
shares that went away on the hub (the owner's **Stop sharing** on the hub's home page) or
servers that stopped.

Audit actions (subject ``owner/server``): ``help.requested``, ``help.granted``,
``help.joined``, ``help.revoked``, ``help.expired``, ``help.closed``, ``help.changed``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import quote

from ..audit import AuditLog
from ..slurm import SlurmClient
from . import jobinfo
from .hubshares import HubShares
from .store import (
    DEFAULT_MINUTES,
    MAX_MESSAGE,
    MAX_MINUTES,
    HelpError,
    HelpRequest,
    HelpStore,
    State,
    check_minutes,
    check_notebook,
    check_text,
)

log = logging.getLogger(__name__)

#: the hub group whose members may see and join every help request
SUPPORT_GROUP = "support"
ASK_FIELDS = {"user", "server", "message", "notebook", "minutes"}


@dataclass(frozen=True)
class Caller:
    """Who calls the help service, as the hub identified them."""

    name: str
    groups: frozenset[str] = frozenset()

    @property
    def is_support(self) -> bool:
        return SUPPORT_GROUP in self.groups


def links(hub_prefix: str, request: HelpRequest) -> tuple[str, str]:
    """The owner's server and its JupyterLab (at the notebook, if any) on the hub, each name
    quoted: whatever was stored, a link stays inside the owner's server."""
    server = f"{hub_prefix}user/{quote(request.owner, safe='')}/" \
             f"{quote(request.server, safe='')}"
    tree = "/".join(quote(name, safe="") for name in request.notebook.split("/")
                    if name not in ("", ".", ".."))
    return server, server.rstrip("/") + "/lab" + (f"/tree/{tree}" if tree else "")


class HelpDesk:
    def __init__(self, store: HelpStore, hub: HubShares, audit: AuditLog,
                 slurm: SlurmClient | None = None, job_output: str = jobinfo.JOB_OUTPUT,
                 hub_prefix: str = "/"):
        self.store, self.hub, self.audit = store, hub, audit
        self.slurm, self.job_output, self.hub_prefix = slurm, job_output, hub_prefix

    # -- the calls -------------------------------------------------------------------------

    async def ask(self, caller: Caller, body: dict) -> HelpRequest:
        """A new help request for the caller's own server: shares it with support."""
        if not isinstance(body, dict):
            raise HelpError(400, "the body must be a JSON object")
        unknown = set(body) - ASK_FIELDS
        if unknown:
            raise HelpError(400, f"unknown field(s) {', '.join(sorted(unknown))}; allowed: "
                                 f"{', '.join(sorted(ASK_FIELDS))}")
        owner = body.get("user", caller.name)
        if owner != caller.name:
            raise HelpError(403, f"you may ask for help with your own server only, not with "
                                 f"{owner}'s")
        server = check_text("server", body.get("server", ""), 255)
        message = check_text("message", body.get("message"), MAX_MESSAGE)
        notebook = check_notebook(body.get("notebook"))
        minutes = check_minutes(body.get("minutes", DEFAULT_MINUTES))
        if not message:
            raise HelpError(400, "message is empty: say what is wrong")
        if await self.hub.server(owner, server) is None:
            raise HelpError(409, f"{owner}/{server} is not running: start your server, "
                                 "then ask for help from it")
        if self.store.open_for(owner, server):
            raise HelpError(409, f"{owner}/{server} is shared with support already: stop "
                                 "sharing it first, or change its time")
        job = await jobinfo.session_job(self.slurm, owner, server) if self.slurm else {}
        request = self.store.add(owner, server, f"group:{SUPPORT_GROUP}", message, notebook,
                                 minutes, job)
        self.audit.record(owner, "help.requested", request.subject, request=request.id,
                          to=request.helper, minutes=minutes, notebook=notebook,
                          until=request.expires_at.isoformat(), job_id=job.get("job_id"))
        log.info("help request %s: %s asks %s until %s", request.id, request.subject,
                 request.helper, request.expires_at)
        return request

    def visible(self, caller: Caller) -> list[HelpRequest]:
        """The caller's own requests; for support also every open one and those they joined
        (so they see when one ended)."""
        mine = self.store.of_owner(caller.name)
        if not caller.is_support:
            return mine
        more = [*self.store.open_requests(), *self.store.joined_by(caller.name)]
        return sorted({r.id: r for r in [*mine, *more]}.values(), key=lambda r: r.id)

    def get(self, caller: Caller, request_id: int) -> HelpRequest:
        request = self.store.get(request_id)
        if request.owner != caller.name and not caller.is_support:
            raise HelpError(404, f"no help request {request_id}")
        return request

    def details(self, request: HelpRequest) -> dict:
        """The request as JSON, with the tail of its job's output while it is open."""
        data = request.to_json()
        data["url"], data["lab_url"] = links(self.hub_prefix, request)
        if request.is_open and request.job.get("job_id"):
            data["output_tail"] = jobinfo.output_tail(request.owner, request.job["job_id"],
                                                      self.job_output)
        return data

    async def who_has_access(self, owner: str, server: str = "") -> list[dict]:
        return await self.hub.shares(owner, server)

    async def join(self, caller: Caller, request_id: int) -> HelpRequest:
        request = self.get(caller, request_id)
        if not caller.is_support or caller.name == request.owner:
            raise HelpError(403, f"help request {request_id} is addressed to the "
                                 f"{SUPPORT_GROUP} group; {caller.name} is not in it")
        if not request.is_open:
            raise HelpError(409, f"help request {request_id} is {request.state.value}: "
                                 f"{request.owner} no longer shares the server")
        request = self.store.add_joined(request_id, caller.name)
        try:
            await self.hub.grant(request.owner, request.server, f"user:{caller.name}")
        except HelpError:
            self.store.remove_joined(request_id, caller.name)
            raise
        self.audit.record(request.owner, "help.granted", request.subject, request=request.id,
                          to=caller.name, until=request.expires_at.isoformat())
        self.audit.record(caller.name, "help.joined", request.subject, request=request.id)
        return request

    async def close(self, caller: Caller, request_id: int) -> HelpRequest:
        """The owner (Stop sharing) or support (done) ends the request and its share."""
        request = self.get(caller, request_id)
        if caller.name != request.owner and not caller.is_support:
            raise HelpError(403, f"only {request.owner} or support may close help request "
                                 f"{request_id}")
        if not request.is_open:
            raise HelpError(409, f"help request {request_id} is {request.state.value} "
                                 "already; nothing to revoke")
        ended = await self._end(request, State.CLOSED, caller.name)
        if ended is None:
            raise HelpError(409, f"help request {request_id} ended meanwhile")
        return ended

    async def change(self, caller: Caller, request_id: int, body: dict) -> HelpRequest:
        """The owner sets how many minutes from now support keeps access (1 to 8 h): less
        ends it sooner, more extends it."""
        request = self.get(caller, request_id)
        if caller.name != request.owner:
            raise HelpError(403, f"only {request.owner} may change help request {request_id}")
        if not isinstance(body, dict) or set(body) != {"minutes"}:
            raise HelpError(400, 'send {"minutes": N}: how long from now support keeps access')
        minutes = check_minutes(body["minutes"], 1, MAX_MINUTES)
        if not request.is_open:
            raise HelpError(409, f"help request {request_id} is {request.state.value}")
        request = self.store.set_expiry(request_id, minutes)
        self.audit.record(caller.name, "help.changed", request.subject, request=request.id,
                          until=request.expires_at.isoformat())
        return request

    # -- the timer -------------------------------------------------------------------------

    async def expire_due(self) -> list[HelpRequest]:
        """Revoke every open request whose time is up."""
        ended = []
        for request in self.store.due():
            done = await self._end(request, State.EXPIRED, "help")
            if done:
                ended.append(done)
        return ended

    async def catch_up(self) -> list[HelpRequest]:
        """Expire what is due, then end open requests whose share is gone from the hub (the
        owner stopped sharing there) or whose server stopped (its share is revoked too)."""
        ended = await self.expire_due()
        for request in self.store.open_requests():
            if await self.hub.server(request.owner, request.server, ready=False) is None:
                done = await self._end(request, State.REVOKED, "help",
                                       reason="the server stopped")
            elif request.joined and not {f"user:{w}" for w in request.joined} & {
                    f"{s['kind']}:{s['name']}"
                    for s in await self.hub.shares(request.owner, request.server)}:
                done = await self._end(request, State.REVOKED, request.owner,
                                       reason="the shares were removed on the hub")
            else:
                continue
            if done:
                ended.append(done)
        return ended

    async def _end(self, request: HelpRequest, state: State, by: str,
                   reason: str = "") -> HelpRequest | None:
        # who joined meanwhile (read again: a join may have come in since ``request``)
        joined = self.store.get(request.id).joined
        for who in joined:
            await self.hub.revoke(request.owner, request.server, f"user:{who}")
        return self._ended(request, state, by, reason, joined)

    def _ended(self, request: HelpRequest, state: State, by: str, reason: str,
               joined: tuple[str, ...]) -> HelpRequest | None:
        ended = self.store.end(request.id, state, by)
        if ended is None:
            return None
        details = {"request": request.id, "from": list(joined)}
        if reason:
            details["reason"] = reason
        if state is State.EXPIRED:
            self.audit.record(by, "help.expired", request.subject, request=request.id,
                              expires_at=request.expires_at.isoformat())
        elif state is State.CLOSED:
            self.audit.record(by, "help.closed", request.subject, request=request.id)
        self.audit.record(by, "help.revoked", request.subject, **details)
        log.info("help request %s %s by %s: %s no longer shared with %s", request.id,
                 state.value, by, request.subject, ", ".join(joined) or "anyone")
        return ended
