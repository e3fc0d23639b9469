"""The dashboards' growth curves (``dashboards.py --sizes`` and ``--queue-sizes``).

``--sizes``: the managers' dashboard with N accounting rows, for each N of the list: the raw
``sacct`` reads (the history's first read over ``history_days`` and an incremental one), the
same through the dashboards' own :class:`~workbench.dashboards.history.History` (in a cache
directory of the benchmark's own, so the running services' cache is not touched), the data
path of one manager view (:meth:`DashboardSource.manager`, 30 days, the history held), and
the manager dashboard's render in chromium through the running service (shared cache emptied
just before the view, then warm). The rows are written as ``--setup`` writes them and
deleted at the end, also on failure.

``--queue-sizes``: N workbench sessions' worth of jobs in ``squeue`` (held, pending jobs of
the benchmark users ``wbbench001...``, with the shape, name and tag of sessions, tagged for
the hub id :data:`HUB_ID`, which is no running hub's, so no reconciler cancels them): the
support dashboard's refresh (steady, every entry expired) and one pass of the reconciler
(time, Slurm calls, memory) for each N; every job is cancelled at the end, also on failure.
"""

from __future__ import annotations

import gc
import resource
import shutil
import statistics
import tempfile
import time
import tracemalloc
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks._cluster import JobShape, cleanup_jobs, ensure_benchmark_users, exit_on_signals
from workbench.slurm import SlurmClient, queries
from workbench.tags import job_tag, session_job_name

#: the hub id of the benchmark's sessions: no running hub's (its reconciler skips them)
HUB_ID = "bench-growth"
#: sessions per benchmark user (1,000 sessions: 20 users)
SESSIONS_PER_USER = 50


def timed(fn, repeat: int = 3) -> float:
    """The median of ``repeat`` runs of ``fn()``, in seconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _s(fn, repeat: int = 3) -> float:
    return round(timed(fn, repeat), 3)


def _rss_mb() -> float:
    """Peak RSS of this process so far (MB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class CountingClient(SlurmClient):
    """The Slurm client, counting the commands it runs (per command name)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: dict[str, int] = {}

    def run(self, query):
        self.calls[query.cmd] = self.calls.get(query.cmd, 0) + 1
        return super().run(query)


# -- the managers' dashboard at N accounting rows ----------------------------------------------

def history_figures(slurm: SlurmClient, days: int) -> dict:
    """The history's reads, raw and through the dashboards' code, with a cache of our own."""
    from workbench.dashboards.history import jobs_frame
    from workbench.dashboards.source import DashboardSettings, DashboardSource
    now = datetime.now(UTC)
    out = {}
    t0 = time.perf_counter()
    rows = slurm.run(queries.history(now - timedelta(days=days)))
    out["sacct_first_read_s"] = round(time.perf_counter() - t0, 3)
    out["history_rows"] = len(rows)
    del rows
    out["sacct_incremental_s"] = _s(lambda: jobs_frame(slurm.run(
        queries.history(now - timedelta(seconds=180)))))
    with tempfile.TemporaryDirectory(prefix="bench-growth-cache-") as cache:
        settings = DashboardSettings(cache_dir=cache, history_days=days, slurm_timeout=600)
        source = DashboardSource(settings, SlurmClient(slurm_conf=settings.slurm_conf,
                                                       timeout=600))
        t0 = time.perf_counter()
        source.history.table()
        out["history_first_read_s"] = round(time.perf_counter() - t0, 3)
        out["history_incremental_s"] = _s(lambda: source.history.table(max_age=0))
        out["history_load_s"] = _s(lambda: DashboardSource(settings).history.table())
        today = now.date()
        source.manager(today - timedelta(days=29), today)  # the budgets' cache warm
        out["manager_view_data_s"] = _s(
            lambda: source.manager(today - timedelta(days=29), today))
    gc.collect()
    out["benchmark_peak_rss_mb"] = _rss_mb()
    return out


def render_figures(page, cache_dir: str, gap: float, manager_render) -> dict:
    """The running service's render: shared cache emptied just before the view (the
    history's first read inside it), then warm (median of 3)."""
    from playwright.sync_api import Error as PlaywrightError
    page.goto("about:blank")
    time.sleep(gap)
    shutil.rmtree(cache_dir, ignore_errors=True)
    try:
        out = {"render_cold_s": round(manager_render(page), 2)}
    except PlaywrightError as e:  # not drawn in time: say so, measure the rest
        out = {"render_cold_s": float("nan"), "render_cold_error": str(e).splitlines()[0]}
    warm = []
    for _ in range(3):
        page.goto("about:blank")
        time.sleep(gap)
        warm.append(manager_render(page))
    out["render_warm_s"] = round(statistics.median(warm), 2)
    out["render_warm_all_s"] = [round(t, 2) for t in warm]
    return out


def manager_growth(args, slurm: SlurmClient, home, setup, remove, login, manager_render,
                   browser_args) -> list[dict]:
    """For each size: write the rows, measure; the rows deleted at the end (also on failure),
    and the running services' shared cache emptied, so that no deleted row stays on show."""
    from playwright.sync_api import sync_playwright

    from workbench.dashboards.source import DashboardSettings
    exit_on_signals()
    cache_dir = DashboardSettings().cache_dir
    results = []
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, cache_dir, True)
        stack.callback(remove, home)
        p = stack.enter_context(sync_playwright())
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=browser_args)
        stack.callback(browser.close)
        password = home.demo_password_file.read_text().strip()
        page = login(browser, "maria", password)
        page.set_default_timeout(60_000)
        for n in args.sizes:
            setup(slurm, home, n, args.days)
            row = {"jobs": n, **history_figures(slurm, args.history_days)}
            if not args.no_browser:
                row.update(render_figures(page, cache_dir, args.gap, manager_render))
            with open("/proc/loadavg") as f:
                row["load_average_1min"] = float(f.read().split()[0])
            print(row, flush=True)
            results.append(row)
    return results


# -- the support dashboard and the reconciler with N sessions in squeue ------------------------

def queue_users(n_sessions: int) -> list[str]:
    count = max(1, -(-n_sessions // SESSIONS_PER_USER))
    return [f"wbbench{i:03d}" for i in range(1, count + 1)]


def submit_sessions(slurm: SlurmClient, users: list[str], have: int, want: int) -> list[int]:
    """Held sessions ``have``..``want`` (pending, reason JobHeldUser): the session shape,
    name and tag, as the benchmark users, in the account ``benchmarks``."""
    shape = JobShape()
    ids = []
    for i in range(have, want):
        user, server = users[i // SESSIONS_PER_USER], f"s{i % SESSIONS_PER_USER}"
        argv = ["--parsable", "--hold", f"--uid={user}", f"--account={shape.account}",
                f"--partition={shape.partition}", f"--gres=gpu:{shape.gpu_type}:{shape.gpus}",
                f"--cpus-per-task={shape.cpus}", f"--mem={shape.memory}",
                f"--time={shape.runtime}", f"--job-name={session_job_name(user, server)}",
                f"--comment={job_tag(HUB_ID, user, server)}", "--output=/dev/null",
                "--chdir=/tmp", "--wrap=sleep 60"]
        out = slurm.run(SlurmClient.command("sbatch", argv))
        ids.append(int(str(out).strip().split(";")[0]))
    return ids


def cancel_by_user(slurm: SlurmClient, users: list[str]) -> None:
    """``scancel -u USER`` for each benchmark user (as root)."""
    for user in users:
        slurm.run(SlurmClient.command("scancel", ["-u", user]))


class StandInHub:
    """The hub's REST answer the reconciler reads (users and their servers' job ids), as a
    hub holding the benchmark's sessions would give it: every session owned."""

    def __init__(self, owners: dict[int, tuple[str, str]]):
        self.owners = owners

    def paged(self, path: str, params=None):
        users: dict[str, dict] = {}
        for job_id, (user, server) in self.owners.items():
            users.setdefault(user, {"name": user, "servers": {}})["servers"][server] = {
                "state": {"job_id": str(job_id)}}
        return iter(users.values())


def reconcile_figures(owners: dict[int, tuple[str, str]]) -> dict:
    from benchmarks._cluster import slurm_conf
    from workbench.reconcile import reconcile_once
    client = CountingClient(slurm_conf=slurm_conf(), timeout=60)
    hub = StandInHub(owners)
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    cancelled = reconcile_once(client, hub, HUB_ID, audit=None, min_age_s=120)
    took = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    times = [took]
    for _ in range(2):
        t0 = time.perf_counter()
        reconcile_once(client, hub, HUB_ID, audit=None, min_age_s=120)
        times.append(time.perf_counter() - t0)
    return {"reconcile_pass_s": round(statistics.median(times), 3),
            "reconcile_slurm_calls": {k: v // 3 for k, v in client.calls.items()},
            "reconcile_peak_python_mb": round(peak / 1e6, 1),
            "reconcile_cancelled": len(cancelled)}


def forced_refreshes(source, widget, names, repeat: int = 3) -> list[float]:
    """Seconds of ``repeat`` refreshes of ``widget``, each with the shared cache's entries
    ``names`` made stale just before (every Slurm call made again)."""
    forced = []
    for _ in range(repeat):
        for name in names:
            meta = source.cache.meta(name)
            if meta:
                source.cache.write_meta(name, **{**meta, "at": 0})
        t0 = time.perf_counter()
        widget.refresh()
        forced.append(time.perf_counter() - t0)
    return forced


def support_figures() -> dict:
    """The support widget's ``refresh()`` with a cache of our own: steady (median of 5) and
    with every entry expired (median of 3)."""
    from extensions.dashboards.support import SupportDashboard
    from workbench.dashboards.source import DashboardSettings, DashboardSource
    with tempfile.TemporaryDirectory(prefix="bench-growth-cache-") as cache:
        source = DashboardSource(DashboardSettings(cache_dir=cache))
        widget = SupportDashboard(source, refresh_s=0)
        steady = _s(widget.refresh, 5)
        forced = forced_refreshes(source, widget, ("squeue", "sinfo", "history", "sstat"))
        rows = len(widget.sessions.value) if widget.sessions.value is not None else 0
        widget.close()
    return {"support_refresh_steady_s": steady,
            "support_refresh_all_calls_s": round(statistics.median(forced), 3),
            "support_sessions_rows": rows}


def queue_growth(args, slurm: SlurmClient) -> list[dict]:
    exit_on_signals()
    users = queue_users(max(args.queue_sizes))
    ensure_benchmark_users(slurm, users)
    results = []
    owners: dict[int, tuple[str, str]] = {}
    with ExitStack() as stack:
        stack.callback(cleanup_jobs, slurm, users)  # then waits until none is left
        stack.callback(cancel_by_user, slurm, users)  # first (an ExitStack unwinds LIFO)
        for n in args.queue_sizes:
            t0 = time.perf_counter()
            ids = submit_sessions(slurm, users, len(owners), n)
            for k, job_id in enumerate(ids, start=len(owners)):
                owners[job_id] = (users[k // SESSIONS_PER_USER], f"s{k % SESSIONS_PER_USER}")
            submit_s = time.perf_counter() - t0
            in_queue = len(slurm.run(queries.jobs()))
            row = {"sessions": n, "jobs_in_squeue": in_queue,
                   "squeue_json_s": _s(lambda: slurm.run(queries.jobs())),
                   "submit_s": round(submit_s, 1), **support_figures(),
                   **reconcile_figures(owners)}
            with open("/proc/loadavg") as f:
                row["load_average_1min"] = float(f.read().split()[0])
            print(row, flush=True)
            results.append(row)
    return results


def print_curve(rows: list[dict], key: str) -> None:
    """Each figure per size, with its growth from the size before beside the work's."""
    if not rows:
        return
    names = [k for k in rows[0] if k != key and isinstance(rows[0][k], (int, float))]
    print(f"\n{'figure':30}" + "".join(f"{r[key]:>24,}" for r in rows))
    for name in names:
        cells = []
        for i, r in enumerate(rows):
            v = r.get(name)
            cell = f"{v:g}" if isinstance(v, (int, float)) else str(v)
            prev = rows[i - 1].get(name) if i else None
            if prev and isinstance(v, (int, float)) and rows[i - 1][key]:
                cell += (f" (x{v / prev:.1f} / x{r[key] / rows[i - 1][key]:.0f})")
            cells.append(f"{cell:>24}")
        print(f"{name:30}" + "".join(cells))


def write_json(path: str | None, figures: dict) -> None:
    import json
    line = json.dumps(figures, default=str)
    print(line)
    if path:
        Path(path).write_text(line + "\n")
