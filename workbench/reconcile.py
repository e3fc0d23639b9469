"""Orphan reconciliation: cancel workbench jobs that no hub server owns any more.

Every job the spawner submits carries a tag (its comment) naming hub, user and server. A
tagged job of *this* hub whose id is in no server's state (the hub forgot it, a spawn was
abandoned, a database was restored) is cancelled and logged, at hub start-up and periodically.
A worker job (Dask workers, torch runs started from a notebook: its tag names the owning
session's job, :func:`~workbench.tags.worker_tag`) is an orphan as soon as that session job is
no longer owned by a server or no longer active: nothing runs on after its session.
Runs as the JupyterHub service ``workbench-reconciler`` (``workbench reconcile``), with the
``admin:server_state`` scope to read which job each server holds.

It also keeps the proxy's routes in step with the hub (:func:`sync_routes`, scope ``proxy``):
a proxy that was restarted (it crashed, a unit restarted it) starts with no routes, and
JupyterHub itself only puts them back at its next activity pass (5 minutes).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from tornado.ioloop import IOLoop, PeriodicCallback

from .audit import AuditLog
from .hubapi import HubAPIError, HubClient
from .slurm import Job, SlurmClient, SlurmError, queries
from .tags import parse_job_tag

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Orphan:
    job: Job
    user: str
    server: str
    session: int | None = None  # the owning session's job id, for a worker job

    @property
    def is_worker(self) -> bool:
        return self.session is not None


def owned_job_ids(hub: HubClient) -> set[int]:
    """Job ids held in any server's state, from the hub's REST API (every page of users)."""
    owned: set[int] = set()
    for user in hub.paged("users", {"include_stopped_servers": "1"}):
        for server in (user.get("servers") or {}).values():
            job_id = (server.get("state") or {}).get("job_id")
            if job_id and str(job_id).isdigit():
                owned.add(int(job_id))
    return owned


def find_orphans(jobs: Iterable[Job], owned: set[int], hub_id: str, min_age_s: float,
                 now: datetime | None = None) -> list[Orphan]:
    """Active jobs tagged for ``hub_id``: sessions older than ``min_age_s`` that no server
    owns, and workers whose session job is not owned or not active (any age)."""
    now = now or datetime.now(UTC)
    jobs = list(jobs)
    active = {j.job_id for j in jobs if j.state.is_active}
    out = []
    for job in jobs:
        tag = parse_job_tag(job.comment)
        if not tag or tag["hub"] != hub_id or not job.state.is_active:
            continue
        if "session" in tag:
            session = int(tag["session"])
            if session not in owned or session not in active:
                out.append(Orphan(job, tag["user"], tag["server"], session))
            continue
        if job.job_id in owned:
            continue
        age = (now - job.submit_time).total_seconds() if job.submit_time else min_age_s
        if age >= min_age_s:
            out.append(Orphan(job, tag["user"], tag["server"]))
    return out


def reconcile_once(slurm: SlurmClient, hub: HubClient, hub_id: str,
                   audit: AuditLog | None = None, min_age_s: float = 120) -> list[Orphan]:
    """One pass: find this hub's orphans and cancel them. Returns what was cancelled."""
    jobs = slurm.run(queries.jobs())
    owned = owned_job_ids(hub)
    orphans = find_orphans(jobs, owned, hub_id, min_age_s)
    for o in orphans:
        if o.is_worker:
            log.warning("cancelling worker job %s of %s/%s (%s): its session job %s is gone",
                        o.job.job_id, o.user, o.server, o.job.state.value, o.session)
        else:
            log.warning("cancelling orphan job %s of %s/%s (%s, submitted %s): no server owns "
                        "it", o.job.job_id, o.user, o.server, o.job.state.value,
                        o.job.submit_time)
        try:
            slurm.run(queries.cancel(o.job.job_id))
        except SlurmError as e:
            log.error("could not cancel orphan job %s: %s", o.job.job_id, e)
            continue
        if audit is not None:
            if o.is_worker:
                audit.record("workbench-reconciler", "worker.orphan-cancelled",
                             f"{o.user}/{o.server}", job_id=o.job.job_id,
                             state=o.job.state.value, session_job_id=o.session)
            else:
                audit.record("workbench-reconciler", "session.orphan-cancelled",
                             f"{o.user}/{o.server}", job_id=o.job.job_id,
                             state=o.job.state.value)
    return orphans


def sync_routes(hub: HubClient) -> int:
    """Ask the hub to put its routes into the proxy now (``POST /hub/api/proxy``: the hub's
    own ``check_routes``, which adds what is missing and removes what is stale); returns how
    many routes the proxy has then."""
    hub.request("POST", "proxy")
    return len(hub.get("proxy") or {})


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether something accepts connections at ``url``'s host and port."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


class RouteSync:
    """One route pass every ``every`` seconds (:func:`sync_routes`). With ``proxy_api`` (the
    proxy's REST API URL) only while the proxy answers there: while it is down the hub is not
    asked (its answer would be a 500 and a traceback in its log each time); the log says once
    that the sync waits, and once that the proxy is back."""

    def __init__(self, hub: HubClient, every: float, proxy_api: str = ""):
        self.hub, self.every, self.proxy_api = hub, every, proxy_api
        self.proxy_up = True

    def __call__(self) -> bool:
        """One pass; whether the hub was asked."""
        if self.proxy_api:
            up = answers(self.proxy_api)
            if up != self.proxy_up:
                if up:
                    log.info("the proxy answers again at %s: routes put back", self.proxy_api)
                else:
                    log.warning("the proxy does not answer at %s: route sync waits for it "
                                "(checked every %.0f s)", self.proxy_api, self.every)
                self.proxy_up = up
            if not up:
                return False
        try:
            sync_routes(self.hub)
        except HubAPIError as e:
            log.warning("route sync failed, next try in %.0f s: %s", self.every, e)
        return True


def run_forever(slurm: SlurmClient, hub: HubClient, hub_id: str, audit: AuditLog,
                interval: float, min_age_s: float, routes_every: float = 0,
                proxy_api: str = "") -> None:
    """A pass now (hub start-up), then one every ``interval`` seconds; a failed pass is
    logged and the next one tries again. ``routes_every`` (seconds, 0: never): how often the
    proxy's routes are put in step with the hub (:class:`RouteSync`, asking only while the
    proxy answers at ``proxy_api`` when given)."""

    def one_pass():
        try:
            done = reconcile_once(slurm, hub, hub_id, audit, min_age_s)
            log.info("reconcile pass: %d orphan job(s) cancelled", len(done))
        except (SlurmError, HubAPIError) as e:
            log.warning("reconcile pass failed, next try in %.0f s: %s", interval, e)

    one_pass()
    PeriodicCallback(one_pass, interval * 1000).start()
    if routes_every:
        PeriodicCallback(RouteSync(hub, routes_every, proxy_api), routes_every * 1000).start()
    IOLoop.current().start()
