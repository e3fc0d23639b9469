"""The workbench's Prometheus metrics: every one declared here once, with its help text.

The metrics service (``extensions/metrics``) serves them at ``/services/metrics/metrics``.
They are read from state that is already kept, never from a Slurm call of their own, and
never while a scrape waits: the service reads them (:func:`read`) in the background, one
reading at a time, and a scrape shows the last one (:func:`families`), its cache ages as of
the scrape. A reading takes:

- the dashboards' shared cache (:mod:`workbench.dashboards.cache`): ``squeue`` and ``sinfo``
  (one call per ``live_max_age``, 10 s), the projects' budgets and the job history (one
  ``sacct`` each per ``budgets_max_age``/``history_max_age``, 60 s), whoever asks: a reading
  only calls Slurm when the entry is older than that, exactly as a dashboard viewer does;
- the audit store (dataset opens and refusals, help shares revoked) and the help store
  (shares in force), one small query each;
- the services' own addresses (a cheap HTTP request each, at most every few seconds).

Labels are closed sets: states, partitions, programmes, projects, datasets of the catalogue,
services, Slurm commands; never a user name or a job id.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .slurm import SlurmClient
from .slurm.models import Job, Node
from .tags import SESSION_JOB_PREFIX, parse_job_tag


@dataclass(frozen=True)
class Spec:
    """One metric: name (unit in it), kind (``gauge`` or ``counter``), help, labels."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...] = ()


SESSIONS = Spec(
    "workbench_sessions", "gauge",
    "Notebook sessions of this hub in the Slurm queue now (squeue, shared cache), by state "
    "(pending, running), partition and programme of the job's account ('' outside the "
    "allocations file).", ("state", "partition", "programme"))
LONGEST_PENDING = Spec(
    "workbench_session_longest_pending_seconds", "gauge",
    "Seconds the longest-waiting pending session of this hub has waited since submission, per "
    "partition it waits for (0: none waiting).", ("partition",))
GPUS = Spec(
    "workbench_gpus", "gauge",
    "GPUs of each partition now (sinfo, shared cache), by state: allocated, idle (on a node "
    "that takes jobs), unavailable (on a drained or down node).", ("partition", "state"))
GRANTED = Spec(
    "workbench_gpu_hours_granted", "gauge",
    "GPU-hours granted to each project (the allocations file; what `workbench allocations "
    "show --json` says).", ("project", "programme"))
USED = Spec(
    "workbench_gpu_hours_used", "gauge",
    "GPU-hours each project used since its grant began (sacct: GPUs x elapsed, as `workbench "
    "allocations show --json` says; shared cache, up to a minute old).", ("project", "programme"))
RESERVED = Spec(
    "workbench_reserved_gpus", "gauge",
    "GPUs reserved for each programme (guard limits in Slurm's account tree), by state: held "
    "(by the programme's running jobs) or free.", ("programme", "state"))
OPENS = Spec(
    "workbench_dataset_opens_total", "counter",
    "Dataset opens through the catalogue (audit store), by dataset and result: opened or "
    "refused.", ("dataset", "result"))
SHARES = Spec(
    "workbench_help_shares_active", "gauge",
    "Servers shared with a support engineer now: one per engineer who joined an open help "
    "request (help store).")
HELP_OPEN = Spec(
    "workbench_help_requests_open", "gauge",
    "Help requests open now (help store), joined or not.")
REVOCATIONS = Spec(
    "workbench_revocations_total", "counter",
    "Help shares ended: expired, closed by the owner or support, or gone from the hub "
    "(audit store: help.revoked).")
SERVICE_UP = Spec(
    "workbench_service_up", "gauge",
    "1 when a registered hub service answers: at its own address (HTTP, any status below "
    "500), or, for one without an address (reconciler, idle culler), its process is alive "
    "(pid file, on the exporter's machine).", ("service",))
CONTROLLER_UP = Spec(
    "workbench_slurm_controller_up", "gauge",
    "1 when the last squeue and sinfo of the shared cache answered, 0 when the controller did "
    "not (the cache keeps the error for its max age) or when one of them has been waiting "
    "for its answer longer than the exporter's controller_answer_within (5 s).")
CACHE_AGE = Spec(
    "workbench_slurm_cache_age_seconds", "gauge",
    "Age at the scrape of the last good answer in the dashboards' shared cache, per entry "
    "(squeue, sinfo, budgets, history).", ("entry",))

ALL = (SESSIONS, LONGEST_PENDING, GPUS, GRANTED, USED, RESERVED, OPENS, SHARES, HELP_OPEN,
       REVOCATIONS, SERVICE_UP, CONTROLLER_UP, CACHE_AGE)

#: buckets of the pending-time histogram, in seconds (10 s to a day)
PENDING_BUCKETS = (10, 30, 60, 120, 300, 600, 1800, 3600, 3 * 3600, 12 * 3600, 86400)


def family(spec: Spec, samples: Mapping[tuple[str, ...], float]) -> Metric:
    """The metric ``spec`` with one sample per label tuple."""
    cls = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
    fam = cls(spec.name, spec.help, labels=list(spec.labels))
    for labels, value in sorted(samples.items()):
        fam.add_metric(list(labels), float(value))
    return fam


@dataclass
class Readings:
    """What one reading found (None: that source could not be read; its metrics are left out,
    so an alert on absence or on ``workbench_slurm_controller_up`` fires, not a false zero).
    ``controller_up`` None: not known yet (no squeue or sinfo answered or failed so far);
    ``cache_at``: when each shared cache entry's last good answer was asked (epoch s)."""

    hub_id: str
    jobs: list[Job] | None = None
    nodes: list[Node] | None = None
    allocations: object | None = None  # workbench.allocations.Allocations
    budgets: list[dict] | None = None
    controller_up: bool | None = True
    cache_at: dict[str, float] = field(default_factory=dict)
    opens: dict[tuple[str, str], int] | None = None
    revocations: int | None = None
    help_requests: list | None = None  # workbench.help.store.HelpRequest
    services: dict[str, bool] = field(default_factory=dict)


def _programme(allocs, account: str) -> str:
    prog = allocs.programme_of(account) if allocs is not None else None
    return prog.name if prog else ""


def sessions(jobs: Iterable[Job], hub_id: str) -> list[Job]:
    """The notebook sessions of hub ``hub_id`` (not their workers, not others' jobs)."""
    out = []
    for j in jobs:
        tag = parse_job_tag(j.comment)
        if tag and tag["hub"] == hub_id and "session" not in tag and j.state.is_active:
            out.append(j)
    return out


def session_families(r: Readings, now: datetime) -> list[Metric]:
    counts: dict[tuple[str, ...], float] = {}
    longest: dict[tuple[str, ...], float] = {}
    for j in sessions(r.jobs, r.hub_id):
        state = ("running" if j.state.is_running else
                 "pending" if j.state.is_pending else j.state.value.lower())
        key = (state, j.partition, _programme(r.allocations, j.account))
        counts[key] = counts.get(key, 0) + 1
        if j.state.is_pending and j.submit_time:
            waited = max((now - j.submit_time).total_seconds(), 0.0)
            longest[(j.partition,)] = max(longest.get((j.partition,), 0.0), waited)
    for n in r.nodes or ():
        for p in n.partitions:
            longest.setdefault((p,), 0.0)
    return [family(SESSIONS, counts), family(LONGEST_PENDING, longest)]


def gpu_families(nodes: Iterable[Node]) -> list[Metric]:
    gpus: dict[tuple[str, ...], float] = {}
    for n in nodes:
        if not n.gpus:
            continue
        free = max(n.gpus - n.gpus_used, 0)
        for p in n.partitions:
            for state, value in (("allocated", n.gpus_used),
                                 ("idle", free if n.ready else 0),
                                 ("unavailable", 0 if n.ready else free)):
                gpus[(p, state)] = gpus.get((p, state), 0) + value
    return [family(GPUS, gpus)]


def budget_families(budgets: Iterable[Mapping]) -> list[Metric]:
    """From the rows of ``workbench allocations show --json``'s ``projects``."""
    granted, used = {}, {}
    for b in budgets:
        key = (b["project"], b["programme"])
        granted[key] = b["granted_gpu_hours"]
        used[key] = b["used_gpu_hours"]
    return [family(GRANTED, granted), family(USED, used)]


def reserved_families(allocs, nodes: list[Node], jobs: list[Job]) -> list[Metric]:
    """Reserved GPUs per programme, held and free: the same figures as ``allocations show``
    (its ``reserved_gpus`` and ``reserved_gpus_in_use``)."""
    from .allocations.budgets import machine_report
    rep = machine_report(allocs, nodes, jobs, ())
    out = {}
    for p in rep.programmes:
        if not p.reserved:
            continue
        held = sum(p.reserved_in_use.values())
        out[(p.programme, "held")] = held
        out[(p.programme, "free")] = sum(p.reserved.values()) - held
    return [family(RESERVED, out)]


def families(r: Readings, now: datetime | None = None) -> list[Metric]:
    """Every metric of :data:`ALL` that ``r`` has what it needs for."""
    now = now or datetime.now(UTC)
    out: list[Metric] = []
    if r.jobs is not None:
        out += session_families(r, now)
    if r.nodes is not None:
        out += gpu_families(r.nodes)
    if r.budgets is not None:
        out += budget_families(r.budgets)
    if r.allocations is not None and r.nodes is not None and r.jobs is not None:
        out += reserved_families(r.allocations, r.nodes, r.jobs)
    if r.opens is not None:
        out.append(family(OPENS, {(d, res): n for (d, res), n in r.opens.items()}))
    if r.revocations is not None:
        out.append(family(REVOCATIONS, {(): r.revocations}))
    if r.help_requests is not None:
        out.append(family(SHARES, {(): sum(len(q.joined) for q in r.help_requests)}))
        out.append(family(HELP_OPEN, {(): len(r.help_requests)}))
    out.append(family(SERVICE_UP, {(name,): int(up) for name, up in r.services.items()}))
    if r.controller_up is not None:
        out.append(family(CONTROLLER_UP, {(): int(r.controller_up)}))
    out.append(family(CACHE_AGE, {(k,): round(max(now.timestamp() - at, 0.0), 3)
                                  for k, at in r.cache_at.items()}))
    return out


class SessionWaits:
    """``workbench_session_pending_seconds``: from submission to start, of sessions that
    started, each observed once (from the shared job history: sessions are the jobs the
    spawner names ``jupyter-...``). When the exporter starts it observes the sessions of the
    history window (92 days by default), then each one that starts after."""

    def __init__(self, registry):
        self.histogram = Histogram(
            "workbench_session_pending_seconds",
            "Seconds from a session's submission to its start (sacct, shared job history), of "
            "the sessions that started: those in the history window when the exporter "
            "started, then each new one once.", buckets=PENDING_BUCKETS, registry=registry)
        self._seen: set[int] = set()

    def observe(self, history) -> int:
        """Observe the started sessions of ``history`` (the jobs table) not seen before;
        returns how many were new."""
        if history is None or history.empty:
            return 0
        started = history[history.start.notna() & history.submit.notna() &
                          history.name.str.startswith(SESSION_JOB_PREFIX)]
        new = 0
        ids = set()
        for job_id, submit, start in zip(started.job_id, started.submit, started.start,
                                         strict=True):
            ids.add(int(job_id))
            if int(job_id) in self._seen:
                continue
            self.histogram.observe(max((start - submit).total_seconds(), 0.0))
            new += 1
        self._seen = ids  # those that left the window are never seen again
        return new


class CountingSlurmClient(SlurmClient):
    """The Slurm layer's client, counting each command it runs in
    ``workbench_slurm_calls_total{command}``, and knowing which of them still wait for their
    answer (:meth:`waiting_since`), from any thread."""

    def __init__(self, calls: Counter, **kwargs):
        super().__init__(**kwargs)
        self.calls = calls
        self._waiting: dict[int, tuple[str, float]] = {}
        self._ids = itertools.count()
        self._guard = threading.Lock()

    def _started(self, cmd: str) -> int:
        self.calls.labels(command=cmd).inc()
        with self._guard:
            key = next(self._ids)
            self._waiting[key] = (cmd, time.monotonic())
        return key

    def _ended(self, key: int) -> None:
        with self._guard:
            self._waiting.pop(key, None)

    def waiting_since(self, commands: Iterable[str]) -> float | None:
        """Seconds the longest-waiting of ``commands`` now running has waited, or None."""
        wanted = set(commands)
        with self._guard:
            starts = [at for cmd, at in self._waiting.values() if cmd in wanted]
        return time.monotonic() - min(starts) if starts else None

    def run(self, query):
        key = self._started(query.cmd)
        try:
            return super().run(query)
        finally:
            self._ended(key)

    async def arun(self, query):
        key = self._started(query.cmd)
        try:
            return await super().arun(query)
        finally:
            self._ended(key)


def slurm_calls(registry=REGISTRY) -> Counter:
    """``workbench_slurm_calls_total{command}`` in ``registry``; in the default registry (the
    hub's, served on ``/hub/metrics``) one counter per process."""
    if registry is REGISTRY:
        global _process_calls
        with _process_guard:
            if _process_calls is None:
                _process_calls = Counter(*_CALLS)
        return _process_calls
    return Counter(*_CALLS, registry=registry)


_CALLS = ("workbench_slurm_calls", "Slurm commands this process ran, by command: on the "
          "hub's /hub/metrics its spawners' (sbatch, squeue, scancel, sacct, sinfo...), on the "
          "metrics service's those of its readings (only when an entry of the dashboards' shared "
          "cache was older than its max age). Sum both for the workbench's Slurm load; the "
          "dashboards' own refreshes are not counted.", ["command"])
_process_calls: Counter | None = None
_process_guard = threading.Lock()


#: the commands whose answer says the controller is up (``workbench_slurm_controller_up``)
CONTROLLER_COMMANDS = ("squeue", "sinfo")

#: audit actions of dataset opens, and the ``result`` label of each
OPEN_RESULTS = {"dataset.opened": "opened", "dataset.refused": "refused"}
REVOKED = "help.revoked"


def read(source, hub_id: str, audit, help_store, services: Mapping[str, bool],
         waits: SessionWaits | None = None) -> Readings:
    """One reading (the metrics service takes them in the background, never in a scrape):
    ``source`` a :class:`~workbench.dashboards.source.DashboardSource` (its shared caches),
    ``audit`` an :class:`~workbench.audit.AuditLog`,
    ``help_store`` a :class:`~workbench.help.store.HelpStore` (None: not installed);
    ``waits``, when given, observes the sessions that started since the last read.
    Blocking (file locks, SQL, a Slurm call when a cache entry is older than its max age)."""
    from sqlalchemy.exc import SQLAlchemyError

    from .allocations import AllocationError
    r = Readings(hub_id, services=dict(services))
    jobs, nodes = source.jobs_now(), source.nodes_now()
    r.jobs, r.nodes = jobs.value, nodes.value
    r.controller_up = not (jobs.error or nodes.error)
    budgets, history = source.budgets(), source.history.table()
    r.budgets = budgets.value
    for name, c in (("squeue", jobs), ("sinfo", nodes), ("budgets", budgets),
                    ("history", history)):
        if c.at is not None:
            r.cache_at[name] = c.at
    if waits is not None:
        waits.observe(history.value)
    try:
        r.allocations = source.allocations()
    except (AllocationError, OSError):
        r.allocations = None
    try:
        counts = audit.counts([*OPEN_RESULTS, REVOKED])
    except (SQLAlchemyError, OSError):
        pass
    else:
        r.opens = {(subject, OPEN_RESULTS[action]): n for (action, subject), n in counts.items()
                   if action in OPEN_RESULTS}
        r.revocations = sum(n for (action, _), n in counts.items() if action == REVOKED)
    if help_store is not None:
        try:
            r.help_requests = help_store.open_requests()
        except (SQLAlchemyError, OSError):
            pass
    return r
