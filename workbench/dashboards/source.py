"""The one object both dashboards read from: settings, shared caches, and the two views.

:class:`DashboardSource` answers :meth:`~DashboardSource.support` and
:meth:`~DashboardSource.manager` with plain tables (DataFrames) and messages; a part that
cannot be answered (Slurm accounting down, the allocations file unreadable, a user who does
not exist) carries a message instead, and the other parts are answered as usual.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pandas as pd
from traitlets import Float, Integer, Unicode, default
from traitlets.config import Configurable

from workbench.paths import FactoryHome
from workbench.slurm import SlurmClient, queries

from . import aggregate, live
from .cache import Cached, SharedCache
from .daterange import DateRange, RangeError, check_range
from .history import History

log = logging.getLogger(__name__)


class DashboardSettings(Configurable):
    """Where the dashboards keep their shared cache, and how fresh each part must be."""

    cache_dir = Unicode(
        help="Directory of the cache every viewer and both dashboards share (root-only). "
        "Default: AIFACTORY_HOME/dashboards/cache. Example: '/var/lib/aifactory/dashboards/"
        "cache'.").tag(config=True)

    @default("cache_dir")
    def _default_cache_dir(self):
        return str(FactoryHome.from_env().root / "dashboards" / "cache")

    slurm_conf = Unicode(
        help="The cluster's slurm.conf. Default: $SLURM_CONF, else the local cluster's. "
        "Example: '/etc/slurm/slurm.conf'.").tag(config=True)

    @default("slurm_conf")
    def _default_slurm_conf(self):
        return os.environ.get("SLURM_CONF") or str(FactoryHome.from_env().slurm_conf)

    slurm_timeout = Float(
        10.0, min=1.0,
        help="Seconds a Slurm command may take before the page says Slurm does not answer. "
        "Example: 10.").tag(config=True)

    history_days = Integer(
        92, min=1, max=3660,
        help="Days of job history read and kept (sacct -S now-N days). A range that starts "
        "earlier is read once more when asked for. Example: 92.").tag(config=True)

    history_max_age = Float(
        60.0, min=1.0,
        help="Seconds a history read serves every viewer before the next incremental sacct. "
        "Example: 60.").tag(config=True)

    history_chunk_days = Integer(
        31, min=1, max=366,
        help="Days of job history one sacct reads when the history is first read (or read "
        "further back): the read goes back in windows of this many days, newest first, so "
        "that each sacct stays bounded however long the history (each costs ~0.15 s more "
        "than one read; 100,000 jobs cost ~3 s to read). What was read stays when a window "
        "fails. Example: 31.").tag(config=True)

    history_compact_s = Float(
        3600.0, min=60.0,
        help="Seconds between two foldings of the history's recent part (what the "
        "incremental reads brought) into its base, which is when old jobs leave the window; "
        "a refresh in between rewrites only the recent part. Example: 3600.").tag(config=True)

    live_max_age = Float(
        10.0, min=0.5,
        help="Seconds one squeue/sinfo answer serves every viewer; with the support page's "
        "refresh period (10 s) this bounds the calls to one per period, however many watch. "
        "Example: 10.").tag(config=True)

    usage_max_age = Float(
        30.0, min=1.0,
        help="Seconds one sstat answer (the running sessions' CPU and memory so far) serves "
        "every viewer; slurmstepd polls a job's use every JobAcctGatherFrequency (30 s by "
        "default), so a shorter age shows nothing newer. Example: 30.").tag(config=True)

    budgets_max_age = Float(
        60.0, min=1.0,
        help="Seconds one reading of the projects' budgets (the allocations' sacct) serves "
        "every viewer. Example: 60.").tag(config=True)

    failures_hours = Integer(
        24, min=1, max=24 * 31,
        help="How far back the support dashboard lists failed jobs, in hours. Example: 24.",
    ).tag(config=True)

    user_days = Integer(
        14, min=1, max=92,
        help="How far back the per-user view lists a user's jobs, in days. Example: 14.",
    ).tag(config=True)

    hub_api_url = Unicode(
        help="The hub's REST API, for the sessions' last activity. Default: "
        "$JUPYTERHUB_API_URL (set for a hub service). Example: 'http://127.0.0.1:8081/hub/api'.",
    ).tag(config=True)

    @default("hub_api_url")
    def _default_hub_api_url(self):
        return os.environ.get("JUPYTERHUB_API_URL", "")

    audit_db = Unicode(
        help="The audit store (failed spawns are read from it). Default: the site's database "
        "($WORKBENCH_DATABASE_URL), else AIFACTORY_HOME/hub/audit.sqlite. "
        "Example: '/var/lib/aifactory/hub/audit.sqlite'.").tag(config=True)

    @default("audit_db")
    def _default_audit_db(self):
        return FactoryHome.from_env().audit_db

    help_db = Unicode(
        help="The pair-debugging help requests (workbench.help's store). Default: the site's "
        "database ($WORKBENCH_DATABASE_URL), else AIFACTORY_HOME/hub/help.sqlite. "
        "Example: '/var/lib/aifactory/hub/help.sqlite'.",
    ).tag(config=True)

    @default("help_db")
    def _default_help_db(self):
        return FactoryHome.from_env().help_db

    merit_db = Unicode(
        help="Calls, proposals, reviews and awards (workbench.merit, the access service's). "
        "Default: the site's database ($WORKBENCH_DATABASE_URL), else "
        "AIFACTORY_HOME/hub/merit.sqlite. Example: '/var/lib/aifactory/hub/merit.sqlite'.",
    ).tag(config=True)

    @default("merit_db")
    def _default_merit_db(self):
        return FactoryHome.from_env().merit_db

    help_url = Unicode(
        "/services/help/",
        help="Where support joins a help request (the help service's list). "
        "Example: '/services/help/'.").tag(config=True)


@dataclass
class Part:
    """One part of a page: a table (or None) and a message for the reader (or "")."""

    table: pd.DataFrame | None = None
    message: str = ""
    as_of: float | None = None


@dataclass
class SupportView:
    sessions: Part
    nodes: Part
    failures: Part
    failed_spawns: Part
    help_requests: Part


@dataclass
class UserView:
    user: str
    message: str = ""
    sessions: Part = field(default_factory=Part)
    jobs: Part = field(default_factory=Part)


@dataclass
class ManagerView:
    range: DateRange | None
    message: str = ""
    budgets: Part = field(default_factory=Part)
    usage: Part = field(default_factory=Part)
    burndown: Part = field(default_factory=Part)
    utilisation: Part = field(default_factory=Part)
    waits: Part = field(default_factory=Part)
    reserved: Part = field(default_factory=Part)
    calls: Part = field(default_factory=Part)
    shares: Part = field(default_factory=Part)


def _stale(c: Cached, what: str) -> str:
    if not c.error:
        return ""
    if c.value is None:
        return f"{what}: {c.error}. Nothing to show yet; the page tries again by itself."
    when = datetime.fromtimestamp(c.at, UTC).strftime("%H:%M:%S") if c.at else "?"
    return f"{what}: {c.error}. Showing what it said at {when} UTC."


class DashboardSource:
    """Shared, bounded reads of Slurm, the allocations and the hub, for both dashboards."""

    def __init__(self, settings: DashboardSettings | None = None,
                 client: SlurmClient | None = None):
        self.settings = settings or DashboardSettings()
        self.client = client or SlurmClient(slurm_conf=self.settings.slurm_conf,
                                            timeout=self.settings.slurm_timeout)
        self.cache = SharedCache(self.settings.cache_dir, self.client)
        self.history = History(self.cache, self.settings.history_days,
                               self.settings.history_max_age, self.settings.history_chunk_days,
                               self.settings.history_compact_s)

    # reads -------------------------------------------------------------------------------

    def jobs_now(self) -> Cached:
        return self.cache.get("squeue", queries.jobs(), self.settings.live_max_age)

    def nodes_now(self) -> Cached:
        return self.cache.get("sinfo", queries.nodes(), self.settings.live_max_age)

    def allocations(self):
        """The allocations file (:class:`workbench.allocations.Allocations`), read again
        when it changes; raises :class:`workbench.allocations.AllocationError` while it is
        unusable."""
        from workbench.allocations.loader import cached
        return cached()

    def budgets(self) -> Cached:
        """Granted, used and left GPU-hours per project, as ``workbench allocations show
        --json`` prints them (the allocations' own ``budgets``), shared for a minute; read
        again at once when the projects or their grants are no longer the shared reading's
        (an award decided, a file edited: the table never lists a project that is gone or
        lacks a new one)."""
        from workbench.allocations import AllocationError, budgets

        def compute():
            return [b.as_dict() for b in budgets(self.allocations(), self.client)]
        got = self.cache.value("budgets", compute, self.settings.budgets_max_age)
        try:
            grants = {(p.name, round(p.gpu_hours, 4)) for p in self.allocations().projects}
        except (AllocationError, OSError):
            return got  # what the shared reading said, until the file is usable again
        if got.value is not None and grants != {(r["project"], r["granted_gpu_hours"])
                                                for r in got.value}:
            got = self.cache.value("budgets", compute, 0)
        return got

    def activity(self) -> dict[str, str]:
        """Hub user → last activity (ISO), with the service's own token; {} without a hub."""
        token = os.environ.get("JUPYTERHUB_API_TOKEN")
        if not (self.settings.hub_api_url and token):
            return {}
        from workbench.hubapi import HubAPIError, HubClient  # the manager's kernel never asks
        hub = HubClient(self.settings.hub_api_url, token, timeout=5)

        def compute():
            return {u["name"]: (u.get("last_activity") or "")[:19].replace("T", " ")
                    for u in hub.paged("users", {"state": "active"})}
        c = self.cache.value("hub-activity", compute, self.settings.live_max_age,
                             errors=(HubAPIError, ValueError))
        return c.value or {}

    # support -----------------------------------------------------------------------------

    def support(self, now: datetime | None = None) -> SupportView:
        now = now or datetime.now(UTC)
        jobs, nodes = self.jobs_now(), self.nodes_now()
        sessions = Part(message=_stale(jobs, "The Slurm controller (squeue)"), as_of=jobs.at)
        if jobs.value is not None:
            usage, error = self.usage_now(jobs.value, now)
            sessions.table = live.sessions(jobs.value, self.activity(), now, usage=usage)
            sessions.message = sessions.message or error
        node_part = Part(message=_stale(nodes, "The Slurm controller (sinfo)"), as_of=nodes.at)
        if nodes.value is not None:
            node_part.table = live.nodes(nodes.value)
        hist = self.history.table()
        failed = Part(message=_stale(hist, "Slurm accounting"), as_of=hist.at)
        since = now - timedelta(hours=self.settings.failures_hours)
        failed.table = live.failures(hist.value, since, out_of_memory=self.killed_by_memory(
            live.killed_candidates(hist.value, since)))
        return SupportView(sessions, node_part, failed, self.failed_spawns(),
                           self.help_requests())

    def killed_by_memory(self, job_ids: list[int]) -> set[int]:
        """Which of ``job_ids`` (failed, killed by signal 9) were killed over their memory,
        from their steps (one sacct for all of them, read again only when the list changes
        or after ``history_max_age``); an accounting error leaves them as they are."""
        if not job_ids:
            return set()

        def compute():
            usage = self.client.run(queries.efficiency(job_ids))
            return {"ids": sorted(job_ids), "oom": [u.job_id for u in usage
                                                    if u.out_of_memory]}
        c = self.cache.value("killed-by-memory", compute, self.settings.history_max_age)
        if c.value is None or c.value["ids"] != sorted(job_ids):
            c = self.cache.value("killed-by-memory", compute, 0)
        return set((c.value or {}).get("oom", ()))

    def usage_now(self, jobs, now: datetime | None = None) -> tuple[dict, str]:
        """The running sessions' figures so far (job id → :class:`~workbench.efficiency.
        Efficiency`): one shared ``sstat`` for all of them per ``usage_max_age``, and each
        session's own GPU samples. A session that started after that sstat reads "not
        measured" until the next. Returns the figures and a message ("" when sstat answered)."""
        from workbench import efficiency
        from workbench.sessions import gpu_samples_path
        from workbench.tags import parse_job_tag
        running = [j for j in jobs if j.state.is_running and parse_job_tag(j.comment)]
        if not running:
            return {}, ""
        c = self.cache.get("sstat", queries.live_usage(j.job_id for j in running),
                           self.settings.usage_max_age)
        out = {}
        for j in running:
            samples = []
            if j.gpus:
                try:
                    samples = efficiency.read_samples(gpu_samples_path(j.user, j.job_id))
                except KeyError:  # no such Unix user here
                    pass
            out[j.job_id] = efficiency.so_far(j, (c.value or {}).get(j.job_id), samples, now)
        return out, _stale(c, "What the sessions used so far (sstat)")

    def failed_spawns(self, limit: int = 50) -> Part:
        # imported here: the manager's kernel never needs SQLAlchemy (0.4 s of its start)
        from sqlalchemy.exc import SQLAlchemyError

        from workbench.audit import AuditLog
        try:
            records = AuditLog(self.settings.audit_db).records("session.submit-failed",
                                                               limit=limit)
        except (SQLAlchemyError, sqlite3.Error, OSError) as e:
            return Part(message=f"The audit store cannot be read: {e}")
        return Part(live.failed_spawns(records))

    def help_requests(self) -> Part:
        """Open pair-debugging help requests (:mod:`workbench.help`), each with a link to
        the help service's list, where support joins (the join is that service's action:
        it grants nothing here)."""
        if importlib.util.find_spec("workbench.help") is None:
            return Part(message="Help requests appear here once pair-debugging "
                        "(workbench.help) is installed.")
        from sqlalchemy.exc import SQLAlchemyError

        from workbench.help import HelpStore
        try:
            requests_ = HelpStore(self.settings.help_db).open_requests()
        except (SQLAlchemyError, OSError) as e:
            return Part(message=f"The help requests cannot be read: {e}")
        rows = [{"id": r.id, "user": r.owner, "session": r.server or "default",
                 "for": r.helper.partition(":")[2], "message": r.message[:200],
                 "node": (r.job or {}).get("node", ""), "job id": (r.job or {}).get("job_id", ""),
                 "ends": r.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
                 "joined": ", ".join(r.joined),
                 "join": f"{self.settings.help_url}#request-{r.id}"} for r in requests_]
        cols = ["id", "user", "session", "for", "message", "node", "job id", "ends", "joined",
                "join"]
        return Part(pd.DataFrame(rows, columns=cols),
                    "" if rows else "No open help requests.")

    def access(self) -> tuple[Part, Part]:
        """Merit-based access (the access service's calls, :mod:`workbench.merit`): each call
        with what it offers, has awarded and has left, what was requested and its proposals
        by state; each programme's share against its grants (file and awards) and what open
        calls hold. The message says how long decisions took."""
        from workbench.paths import database_made
        if not database_made(self.settings.merit_db):
            return Part(message="No call for compute time yet (the access service)."), Part()
        from sqlalchemy.exc import SQLAlchemyError

        from workbench.merit.model import MeritError
        from workbench.merit.store import MeritStore
        from workbench.merit.views import Reader
        nodes = self.nodes_now()
        reader = Reader(store=MeritStore(self.settings.merit_db),
                        allocations=self.allocations, nodes=lambda: nodes.value or [])
        try:
            report = reader.report()
        except (SQLAlchemyError, OSError, MeritError) as e:
            return Part(message=f"The calls for compute time cannot be read: {e}"), Part()
        calls = pd.DataFrame(
            [{"call": c["name"], "programme": c["programme"], "state": c["state"],
              "closes": c["closes"], "GPU-hours offered": c["gpu_hours"],
              "GPU-hours awarded": c["awarded_gpu_hours"],
              "GPU-hours left": c["left_gpu_hours"],
              "GPU-hours requested": c["requested_gpu_hours"],
              **{f"{state}": n for state, n in c["proposals_by_state"].items()}}
             for c in report["calls"]])
        shares = pd.DataFrame(
            [{"programme": p["programme"], "share GPU-hours": p["share_gpu_hours"],
              "granted GPU-hours (file and awards)": p["granted_gpu_hours"],
              "held by open calls": p["held_by_calls"], "left GPU-hours": p["left_gpu_hours"]}
             for p in report["programmes"]])
        waits = report["decision_hours"]
        said = (f"{waits['decided']} proposals decided; from submission to decision: median "
                f"{waits['median']} h, longest {waits['longest']} h." if waits["decided"]
                else "No proposal decided yet.")
        return Part(calls, said if report["calls"] else "No call for compute time yet."), \
            Part(shares, _stale(nodes, "The Slurm controller (sinfo)"))

    def user(self, name: str, now: datetime | None = None) -> UserView:
        """One user's sessions and recent jobs; a clear message for a name that is wrong."""
        now = now or datetime.now(UTC)
        name = (name or "").strip()
        if not name:
            return UserView(name, "Type a user name.")
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            return UserView(name, f"{name!r} is not a user name.")
        try:
            pwd.getpwnam(name)
        except KeyError:
            return UserView(name, f"There is no user {name!r} on this cluster.")
        view = UserView(name)
        jobs = self.jobs_now()
        view.sessions = Part(message=_stale(jobs, "The Slurm controller (squeue)"))
        if jobs.value is not None:
            usage, _ = self.usage_now(jobs.value, now)
            view.sessions.table = live.sessions(jobs.value, self.activity(), now, user=name,
                                                usage=usage)
        hist = self.history.table()
        view.jobs = Part(live.recent_jobs(hist.value, name,
                                          now - timedelta(days=self.settings.user_days)),
                         _stale(hist, "Slurm accounting"), hist.at)
        if view.jobs.table.empty and (view.sessions.table is None or view.sessions.table.empty):
            view.message = (f"{name} has no running or waiting jobs and none in the last "
                            f"{self.settings.user_days} days.")
        return view

    # managers ----------------------------------------------------------------------------

    def manager(self, start, end, now: datetime | None = None) -> ManagerView:
        """Everything the managers' page shows for the range ``start``..``end`` (dates or
        ``YYYY-MM-DD``, both days included); a bad range gives only a message."""
        now = now or datetime.now(UTC)
        try:
            rng = check_range(start, end, today=now.date())
        except RangeError as e:
            return ManagerView(None, str(e))
        view = ManagerView(rng)
        try:
            allocs = self.allocations()
        except (ImportError, OSError, ValueError) as e:
            allocs = None
            view.message = f"The allocations file cannot be read: {e}"
        budgets = self.budgets()
        view.budgets = Part(message=_stale(budgets, "Slurm accounting (the budgets)"),
                            as_of=budgets.at)
        if budgets.value is not None:
            view.budgets.table = aggregate.budget_table(budgets.value)
        covered = self.history.covered_from()
        if covered is None or rng.start_time < covered:
            error = self.history.cover(rng.start_time)
            if error:
                view.usage.message = error
        hist = self.history.table()
        jobs = hist.value
        stale = _stale(hist, "Slurm accounting")
        programmes = aggregate.programme_map(allocs) if allocs else {}
        view.usage = Part(aggregate.usage_by_project(jobs, programmes, rng, now),
                          view.usage.message or stale, hist.at)
        if view.usage.table.empty:
            view.usage.message = (view.usage.message or
                                  f"No GPU jobs ran between {rng}.")
        if budgets.value is not None:
            view.burndown = Part(aggregate.burndown(jobs, budgets.value, rng, now), stale)
        nodes = self.nodes_now()
        if nodes.value is not None:
            view.utilisation = Part(aggregate.utilisation(
                jobs, live.partition_gpus(nodes.value), rng, now), stale)
        else:
            view.utilisation = Part(message=_stale(nodes, "The Slurm controller (sinfo)"))
        view.waits = Part(aggregate.queue_waits(jobs, programmes, rng), stale)
        if view.waits.table.empty:
            view.waits.message = view.waits.message or f"No job started between {rng}."
        if allocs is not None:
            view.reserved = Part(aggregate.reserved_share(jobs, allocs, rng, now), stale)
        view.calls, view.shares = self.access()
        return view

    def project_jobs(self, project: str, rng: DateRange) -> Part:
        """The jobs of one project inside the range (a manager's drill-down)."""
        jobs = self.history.table().value
        mine = jobs[(jobs.account == project) & (jobs.submit < rng.end_time) &
                    (jobs.end.isna() | (jobs.end >= rng.start_time))]
        if mine.empty:
            return Part(message=f"Project {project} has no jobs between {rng}.")
        return Part(mine.sort_values("submit", ascending=False).head(500))


def shared_source() -> DashboardSource:
    """The process's source (one per kernel; the caches behind it are shared by all)."""
    global _SOURCE
    if _SOURCE is None:
        _SOURCE = DashboardSource()
    return _SOURCE


_SOURCE: DashboardSource | None = None


def warm() -> None:
    """Before a viewer comes (a dashboard service's waiting kernel runs this): the shared job
    history brought up to date (incrementally, and only if older than its ``max_age``) and
    held in this process. Nothing a page shows is kept from here: a view still reads
    everything by the caches' ages (the budgets and the allocations only at view time)."""
    shared_source().history.table()
