"""The dashboards on a real accounting history: render and refresh times beside the raw
Slurm queries they need, and Slurm calls per minute for one and for ten viewers.

Run as root on the machine of the local AI Factory, hub and dashboards up::

    /opt/aifactory/venv/bin/python benchmarks/dashboards.py --setup   # once: 20,000 jobs
    /opt/aifactory/venv/bin/python benchmarks/dashboards.py           # ~4 min

**The 20,000 jobs** (``--setup``) are accounting rows written straight into slurmdbd's
MariaDB job table, in the dedicated account ``bench-dashboards`` (under root, not in the
allocations file, user ``root``): finished jobs with submit times spread over the last
``--days`` days (default 14), waits of 0-30 min, runs of 1-20 min, 0-4 GPUs on the
``gpu``/``gpu-a100`` partitions, 5 % of them failed, timed out or out of memory. Running
20,000 real jobs would have taken the shared 2-core controller for an hour and could not
give days of submit times. The rows are what ``sacct`` reads (job ids from 60,000,000 up,
so they never meet a real one); slurmctld never sees them, so no project's budget, no queue
and no other engineer's job is touched. ``--remove`` deletes them again.

Measured (printed as a table and one JSON line):

- raw query times: the history's first read (``sacct`` of the manager's 30-day window with
  the dashboards' fields), an incremental read, the budgets' ``sacct``, ``squeue --json``,
  ``sinfo --json``;
- the manager dashboard's first full render in chromium (hub login done; from navigation
  until the budgets table and the charts are drawn): the first viewer after a restart of the
  service with the shared cache emptied (chromium's caches empty too), with the cache emptied
  just before the view (the worst case: the history's first ``sacct`` inside the render), and
  with the cache warm;
- a support dashboard refresh (the widget's ``refresh()``), with every cache entry expired
  (all Slurm calls made) and in the steady state;
- Slurm calls per minute (counted by wrappers of the Slurm commands, benchmarks._cluster's
  CallShim, first on the support dashboard service's PATH) with one viewer, then ten, each a
  chromium page on the support dashboard refreshing by itself.

``--render-only`` measures only the manager dashboard's render with the cache warm
(``--repeat`` times, median), with the end of each phase: Voila's page complete (kernel started,
notebook run), the dashboard drawn, the full render, all four charts drawn.

``--sizes 20000,100000,200000`` and ``--queue-sizes 0,100,1000`` measure growth curves instead
(:mod:`benchmarks._growth`): the managers' dashboard at each number of accounting rows, the
support refresh and a reconciler pass at each number of held sessions in ``squeue``; each
removes its rows or jobs at the end, also on failure. Run them under
``flock /tmp/wb-heavy.lock`` (the slurmdbd and the controller are shared).

Renders are ``--gap`` seconds apart (default 10): one viewer at a time, the way managers arrive;
the service replaces the warm kernel a view took within ~7 s (5 s delay, then its start and
imports). ``--gap 0`` measures a burst instead: views back to back, most of them without a
warm kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._cluster import CallShim  # noqa: E402
from benchmarks._growth import forced_refreshes, timed  # noqa: E402
from tests.browser.helpers import CHROMIUM_ARGS, log_in  # noqa: E402  (as the tests do)
from workbench.dashboards.history import jobs_frame  # noqa: E402
from workbench.dashboards.source import DashboardSettings, DashboardSource  # noqa: E402
from workbench.paths import FactoryHome  # noqa: E402
from workbench.slurm import SlurmClient, SlurmError, queries  # noqa: E402

ACCOUNT = "bench-dashboards"
FIRST_ID = 60_000_000
CLUSTER = "aifactory"
HUB = "http://127.0.0.1:8000/"
#: slurm's job states in the database (slurm/slurm.h)
STATES = {"COMPLETED": 3, "CANCELLED": 4, "FAILED": 5, "TIMEOUT": 6, "OUT_OF_MEMORY": 11}


def mysql(home: FactoryHome, sql: str) -> str:
    """``sql`` as slurmdbd's database user; the password from a root-only defaults file,
    never argv (every user can read a process's argv)."""
    password = (home.secrets / "db_password").read_text().strip()
    with tempfile.NamedTemporaryFile("w", prefix="bench-mysql-", suffix=".cnf") as cnf:
        os.chmod(cnf.name, 0o600)
        cnf.write(f"[client]\nuser=slurm\npassword={password}\n")
        cnf.flush()
        proc = subprocess.run(["mysql", f"--defaults-extra-file={cnf.name}", "-h127.0.0.1",
                               "-P16306", "-N", "slurm_acct_db"], input=sql,
                              capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"mysql failed: {proc.stderr.strip()}")
    return proc.stdout


def setup(slurm: SlurmClient, home: FactoryHome, n: int, days: int) -> None:
    """The account and ``n`` accounting rows (only those missing are written)."""
    have = {r[0] for r in slurm.run(queries.sacctmgr_list("account", "Account"))}
    if ACCOUNT not in have:
        slurm.run(queries.sacctmgr_modify("add", "account", ACCOUNT, "parent=root",
                                          "Description=dashboards benchmark",
                                          "Organization=benchmarks"))
        slurm.run(queries.sacctmgr_modify("add", "user", "root", f"account={ACCOUNT}"))
    assoc = mysql(home, f"SELECT id_assoc FROM {CLUSTER}_assoc_table WHERE acct='{ACCOUNT}' "
                  "AND user='root' AND deleted=0;").split()
    if not assoc:
        raise SystemExit(f"no association root/{ACCOUNT} in the database yet; run again")
    present = int(mysql(home, f"SELECT COUNT(*) FROM {CLUSTER}_job_table WHERE id_job >= "
                              f"{FIRST_ID} AND account='{ACCOUNT}';").strip())
    if present >= n:
        print(f"{present} benchmark jobs already in accounting")
        return
    rnd = random.Random(10)
    now = int(time.time())
    rows = []
    for i in range(present, n):
        submit = now - rnd.randint(3600, days * 86400)
        start = submit + int(rnd.expovariate(1 / 300)) % 1800
        end = start + rnd.randint(60, 1200)
        part, node, inx, tres_id = rnd.choice([("gpu", "h100-1", 3, 1002),
                                               ("gpu", "h100-2", 4, 1002),
                                               ("gpu-a100", "a100-1", 0, 1003)])
        gpus = rnd.choice([0, 1, 1, 1, 2, 4])
        tres = "1=1,2=1024,4=1" + (f",1001={gpus},{tres_id}={gpus}" if gpus else "")
        state = rnd.choices(list(STATES), weights=[90, 5, 3, 1, 1])[0]
        exit_code = 256 if state == "FAILED" else 0
        rows.append(f"({now},'{ACCOUNT}',1,'bench-{i % 50}',{assoc[0]},{FIRST_ID + i},1,0,0,"
                    f"{exit_code},'{node}',1,'{inx}','{part}',1,{STATES[state]},30,{submit},"
                    f"{submit},{start},{end},'{tres}','{tres}',0,0,4294967294,0,0,'/root')")
    cols = ("mod_time,account,cpus_req,job_name,id_assoc,id_job,id_qos,id_user,id_group,"
            "exit_code,nodelist,nodes_alloc,node_inx,`partition`,priority,state,timelimit,"
            "time_submit,time_eligible,time_start,time_end,tres_alloc,tres_req,"
            "id_wckey,het_job_id,het_job_offset,state_reason_prev,id_resv,work_dir")
    for batch in range(0, len(rows), 20_000):  # one mysql per 20 inserts of 1,000 rows
        mysql(home, "".join(f"INSERT INTO {CLUSTER}_job_table ({cols}) VALUES "
                            + ",".join(rows[k:k + 1000]) + ";\n"
                            for k in range(batch, min(batch + 20_000, len(rows)), 1000)))
    print(f"wrote {len(rows)} accounting rows in account {ACCOUNT}")


def remove(home: FactoryHome) -> None:
    mysql(home, f"DELETE FROM {CLUSTER}_job_table WHERE id_job >= {FIRST_ID} AND "
                f"account='{ACCOUNT}';")
    print("removed the benchmark's accounting rows")


def raw_queries(slurm: SlurmClient, source: DashboardSource) -> dict:
    now = datetime.now(UTC)
    from workbench.allocations import usage_query
    allocs = source.allocations()
    out = {
        "sacct_history_30d_s": timed(lambda: jobs_frame(slurm.run(
            queries.history(now - timedelta(days=30))))),
        "sacct_history_incremental_s": timed(lambda: jobs_frame(slurm.run(
            queries.history(now - timedelta(seconds=180))))),
        "sacct_budgets_s": timed(lambda: slurm.run(usage_query(allocs))),
        "squeue_s": timed(lambda: slurm.run(queries.jobs())),
        "sinfo_s": timed(lambda: slurm.run(queries.nodes())),
    }
    out["history_rows_30d"] = len(slurm.run(queries.history(now - timedelta(days=30))))
    return out


def login(browser, user: str, password: str):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(120_000)
    log_in(page, HUB, user, password)
    page.wait_for_load_state()
    return page


def manager_render(page) -> float:
    t0 = time.perf_counter()
    page.goto(f"{HUB}services/manager-dashboard/")
    page.locator(".wb-table-budgets table").wait_for(state="visible")
    page.locator(".wb-table-queue-waits table").wait_for(state="visible")
    page.locator(".wb-manager .js-plotly-plot").first.wait_for(state="visible")
    return time.perf_counter() - t0


def render_phases(page) -> dict:
    """One render, with the time (s from navigation) at which each phase ended: ``page``
    (Voila's page complete: the kernel started and the notebook ran), ``widget`` (the
    dashboard's first widget drawn), ``full`` (budgets and queue-wait tables and a chart
    drawn: :func:`manager_render`'s end), ``charts`` (all four charts drawn)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    t0 = time.perf_counter()
    page.goto(f"{HUB}services/manager-dashboard/", wait_until="domcontentloaded")
    phases = {"page": time.perf_counter() - t0}
    page.locator(".wb-manager").first.wait_for(state="visible")
    phases["widget"] = time.perf_counter() - t0
    page.locator(".wb-table-budgets table").wait_for(state="visible")
    page.locator(".wb-table-queue-waits table").wait_for(state="visible")
    page.locator(".wb-manager .js-plotly-plot").first.wait_for(state="visible")
    phases["full"] = time.perf_counter() - t0
    try:
        page.wait_for_function("document.querySelectorAll('.wb-manager .js-plotly-plot')"
                               ".length >= 4", timeout=20_000)
        phases["charts"] = time.perf_counter() - t0
    except PlaywrightTimeout:
        phases["charts"] = float("nan")  # fewer than four charts drawn
    return phases


def render_only(home: FactoryHome, repeat: int, figures: dict, json_path: str | None,
                gap: float = 10.0) -> int:
    from playwright.sync_api import sync_playwright
    password = home.demo_password_file.read_text().strip()
    runs = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = login(browser, "maria", password)
        manager_render(page)  # the cache warm, chromium's own caches too
        for _ in range(repeat):
            page.goto("about:blank")
            time.sleep(gap)
            runs.append(render_phases(page))
        browser.close()
    for name in runs[0]:
        figures[f"manager_render_warm_{name}_s"] = statistics.median(r[name] for r in runs)
    figures["manager_render_warm_full_all_s"] = [round(r["full"], 2) for r in runs]
    figures["gap_s"] = gap
    with open("/proc/loadavg") as f:
        figures["load_average_1min"] = float(f.read().split()[0])
    print(json.dumps(figures))
    if json_path:
        Path(json_path).write_text(json.dumps(figures) + "\n")
    return 0


def support_refresh(settings: DashboardSettings) -> dict:
    from extensions.dashboards.support import SupportDashboard
    source = DashboardSource(settings)
    widget = SupportDashboard(source, refresh_s=0)
    steady = timed(widget.refresh, 5)
    forced = forced_refreshes(source, widget, ("squeue", "sinfo", "history"))
    widget.close()
    return {"support_refresh_steady_s": steady,
            "support_refresh_all_calls_s": statistics.median(forced)}


def calls_per_minute(browser, password: str, viewers: int, seconds: float,
                     shim: CallShim) -> dict:
    """Slurm commands run per minute by the support dashboard's service while ``viewers``
    watch it, counted by the shim's wrappers (the service was restarted with them first on
    its PATH)."""
    pages = [login(browser, "sam", password) for _ in range(viewers)]
    for p in pages:
        p.goto(f"{HUB}services/support-dashboard/")
        p.locator(".wb-table-sessions").wait_for(state="visible")
    t0 = time.time()
    time.sleep(seconds)
    calls = shim.calls(t0, time.time())
    for p in pages:
        p.close()
    scale = 60 / seconds
    return {name: round(n * scale, 1) for name, n in sorted(calls.items())}


def restart_dashboards(path_first: Path | None = None) -> None:
    """Restart both dashboard services, with ``path_first`` (the shim) first on their PATH."""
    env = dict(os.environ)
    if path_first:
        env["PATH"] = f"{path_first}:{env.get('PATH', '/usr/bin:/bin')}"
    subprocess.run([sys.executable, "-m", "workbench.cli", "restart", "support-dashboard",
                    "manager-dashboard"], check=True, capture_output=True, env=env)


def _sizes(text: str) -> list[int]:
    """``20000,100000`` → [20000, 100000] (sorted; each a whole number, 0 or more)."""
    try:
        sizes = sorted(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: whole numbers, comma-separated") from None
    if not sizes or sizes[0] < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: sizes of 0 or more")
    return sizes


def growth(args, slurm: SlurmClient, home: FactoryHome) -> int:
    """``--sizes`` and ``--queue-sizes`` (:mod:`benchmarks._growth`)."""
    from benchmarks import _growth
    figures: dict = {"date": datetime.now(UTC).isoformat(timespec="minutes"),
                     "cpus": os.cpu_count()}
    if args.sizes:
        figures["manager"] = _growth.manager_growth(args, slurm, home, setup, remove, login,
                                                    manager_render, CHROMIUM_ARGS)
        _growth.print_curve(figures["manager"], "jobs")
    if args.queue_sizes:
        figures["queue"] = _growth.queue_growth(args, slurm)
        _growth.print_curve(figures["queue"], "sessions")
    _growth.write_json(args.json, figures)
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setup", action="store_true", help="write the accounting rows first")
    ap.add_argument("--remove", action="store_true", help="delete the rows and stop")
    ap.add_argument("--jobs", type=int, default=20_000, help="accounting rows (default 20000)")
    ap.add_argument("--days", type=int, default=14, help="days of submit times (default 14)")
    ap.add_argument("--viewers", type=int, default=10, help="concurrent viewers (default 10)")
    ap.add_argument("--seconds", type=float, default=60, help="length of each call count")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--render-only", action="store_true",
                    help="only the manager dashboard's render in chromium (cache warm, "
                         "--repeat times, with its phases); no raw queries, no support "
                         "refresh, no call counts")
    ap.add_argument("--repeat", type=int, default=3,
                    help="with --render-only: renders measured (default 3; the median)")
    ap.add_argument("--gap", type=float, default=10.0,
                    help="seconds between two measured renders (default 10: a viewer at a "
                         "time; 0: a burst of views)")
    ap.add_argument("--sizes", type=_sizes,
                    help="the growth curve of the managers' dashboard: accounting rows, "
                         "comma-separated (e.g. 20000,100000,200000); for each, the rows are "
                         "written, the history's reads, a manager view's data and its render "
                         "measured; all rows deleted at the end. Run it under "
                         "flock /tmp/wb-heavy.lock (the slurmdbd is shared)")
    ap.add_argument("--history-days", type=int, default=92,
                    help="with --sizes: days the history's first read covers (default 92, "
                         "the dashboards' history_days)")
    ap.add_argument("--no-browser", action="store_true",
                    help="with --sizes: no render in chromium, only the data path")
    ap.add_argument("--queue-sizes", type=_sizes,
                    help="the growth curve of the support dashboard's refresh and of one "
                         "reconciler pass with N sessions' worth of held jobs in squeue, "
                         "comma-separated (e.g. 0,100,1000); the jobs are cancelled at the end")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    home = FactoryHome.from_env()
    slurm = SlurmClient(slurm_conf=str(home.slurm_conf))
    if args.remove:
        remove(home)
        return 0
    if args.sizes or args.queue_sizes:
        return growth(args, slurm, home)
    if args.setup:
        setup(slurm, home, args.jobs, args.days)
    settings = DashboardSettings()
    source = DashboardSource(settings, slurm)
    figures = {"accounting_rows": int(mysql(home, f"SELECT COUNT(*) FROM {CLUSTER}_job_table;"))}
    if args.render_only:
        return render_only(home, args.repeat, figures, args.json, args.gap)
    figures.update(raw_queries(slurm, source))
    password = home.demo_password_file.read_text().strip()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = login(browser, "maria", password)
        # the first viewer after a restart (the shared cache emptied too): the service's
        # waiting kernel brings the history up to date before anyone comes
        shutil.rmtree(settings.cache_dir, ignore_errors=True)  # ours: the shared cache
        # (returns once the service answers)
        subprocess.run([sys.executable, "-m", "workbench.cli", "restart", "manager-dashboard"],
                       check=True, capture_output=True)
        time.sleep(args.gap)
        figures["manager_first_render_after_restart_s"] = manager_render(page)
        # the worst case: the cache emptied just before the view (no history read yet)
        page.goto("about:blank")
        time.sleep(args.gap)
        shutil.rmtree(settings.cache_dir, ignore_errors=True)
        figures["manager_first_render_cold_s"] = manager_render(page)
        warm = []
        for _ in range(3):
            page.goto("about:blank")
            time.sleep(args.gap)
            warm.append(manager_render(page))
        figures["manager_first_render_warm_s"] = statistics.median(warm)
        page.close()
        figures.update(support_refresh(settings))
        shim = CallShim(Path(tempfile.mkdtemp(prefix="bench-dashboards-")))
        shim.install()
        restart_dashboards(shim.bindir)
        try:
            figures["calls_per_min_1_viewer"] = calls_per_minute(
                browser, password, 1, args.seconds, shim)
            figures[f"calls_per_min_{args.viewers}_viewers"] = calls_per_minute(
                browser, password, args.viewers, args.seconds, shim)
        finally:
            browser.close()
            restart_dashboards()
            shutil.rmtree(shim.bindir.parent, ignore_errors=True)
    width = max(len(k) for k in figures)
    for k, v in figures.items():
        print(f"{k:{width}}  {v:.3f}" if isinstance(v, float) else f"{k:{width}}  {v}")
    line = json.dumps(figures)
    print(line)
    if args.json:
        Path(args.json).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SlurmError as e:
        sys.exit(f"benchmark failed: {e}")
