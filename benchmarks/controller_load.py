"""Slurm CLI calls per minute with 1, 10 and 100 live sessions: SlurmGPUSpawner vs stock
SlurmSpawner.

A session is a spawn whose job pends in the queue (100 running Jupyter servers do not fit on
this machine): while the benchmark runs, the Slurm account ``benchmarks`` has GrpJobs=0, so
every job of its users pends (reason AssocGrpJobsLimit) and each hub's spawner keeps waiting
in ``start()`` as it would for a busy partition. Two throwaway JupyterHubs (one per spawner
class) run every Slurm command through a PATH shim that logs each call; for each N and each
hub, N users (wbbench001...) spawn at once through the REST API, and once all N jobs pend,
the calls of a ``--window`` second window are counted. Also reported: the CPU seconds the hub
(with its reaped children: sudo, squeue...) and slurmctld spent in the window.

Run as root: /opt/aifactory/venv/bin/python benchmarks/controller_load.py
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from _cluster import (
    ACCOUNT,
    BenchmarkError,
    CallShim,
    JobShape,
    active_jobs,
    cancel_jobs,
    cleanup_jobs,
    cpu_seconds,
    ensure_benchmark_users,
    jobs_held_pending,
    partition_address,
    require_root,
    root_client,
    run_benchmark,
    slurmctld_pid,
    user_names,
    wait_until,
)
from _hubs import (
    ThrowawayHub,
    add_common_options,
    drop_workdir,
    start_hubs,
)

KINDS = ("ours", "stock")
LABELS = {"ours": "SlurmGPUSpawner", "stock": "batchspawner.SlurmSpawner"}
#: ours counts as flat when its calls/min at the largest N are within this factor of the smallest
FLAT_FACTOR = 1.25
#: HTTP requests to a hub in flight at once while starting or stopping sessions
API_WORKERS = 16


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=(
        f"Needs root. Creates Unix users wbbench001... and their associations in the Slurm "
        f"account {ACCOUNT} if missing, sets GrpJobs=0 on that account while it runs and "
        "resets it (GrpJobs=-1) at the end, cancels every job it submitted."))
    p.add_argument("--sizes", default="1,10,100",
                   help="numbers of live sessions, comma-separated (default 1,10,100)")
    p.add_argument("--window", type=float, default=60,
                   help="seconds over which calls are counted per configuration (default 60)")
    p.add_argument("--settle", type=float, default=5,
                   help="seconds between the last job pending and the window (default 5)")
    add_common_options(p, "logs, call log")
    args = p.parse_args(argv)
    try:
        args.sizes = sorted({int(n) for n in args.sizes.split(",")})
    except ValueError:
        p.error("--sizes takes integers, e.g. 1,10,100")
    if args.sizes[0] < 1 or args.sizes[-1] > 200:
        p.error("--sizes must be between 1 and 200")
    if args.window < 10:
        p.error("--window must be at least 10 s")
    return args


# -- sessions --------------------------------------------------------------------------------

def spawn_all(hub: ThrowawayHub, users: list[str], options: dict) -> None:
    with ThreadPoolExecutor(API_WORKERS) as pool:
        list(pool.map(lambda u: hub.api.spawn(u, options), users))


def failure_lines(hub: ThrowawayHub, offset: int, users: list[str]) -> list[str]:
    """The hub's log lines since ``offset`` that say why a spawn of ``users`` failed."""
    wanted = {f"Not starting {u}'s server" for u in users}
    return [line for line in hub.log_since(offset).splitlines()
            if any(w in line for w in wanted)]


def start_sessions(hub: ThrowawayHub, kind: str, users: list[str], slurm,
                   timeout: float) -> list[str]:
    """Spawn a session for each of ``users`` at once and wait until every spawn is pending in
    the hub with exactly one pending job in Slurm. A spawn that fails has its job (if any)
    cancelled and is started again; returns the hub's reasons of those failures."""
    options = JobShape().user_options() if kind == "ours" else {}
    offset = hub.log_offset()
    spawn_all(hub, users, options)
    failed_total: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        servers = hub.api.active_servers()
        failed = [u for u in users if u not in servers]
        if failed:
            failed_total += failed
            if len(failed_total) > len(users):
                raise BenchmarkError(f"{hub.name}: {len(failed_total)} spawns failed; see "
                                     "the hub log")
            print(f"{hub.name}: spawn of {len(failed)} session(s) failed ({failed[:3]}...); "
                  "cancelling their jobs and spawning them again", flush=True)
            cancel_jobs(slurm, failed)
            spawn_all(hub, failed, options)
        elif all(servers[u].get("pending") == "spawn" for u in users):
            jobs = [j for j in active_jobs(slurm, users) if j.state.is_pending]
            if len(jobs) == len(users) and {j.user for j in jobs} == set(users):
                return failure_lines(hub, offset, failed_total)
        if time.monotonic() > deadline:
            raise BenchmarkError(f"{hub.name}: {len(users)} sessions not all pending within "
                                 f"{timeout:g} s")
        time.sleep(1.0)


def stop_sessions(hub: ThrowawayHub, slurm, users: list[str]) -> None:
    """Stop every session through the API, then cancel whatever job is left (as root)."""
    try:
        with ThreadPoolExecutor(API_WORKERS) as pool:
            list(pool.map(hub.api.stop, users))
        wait_until(lambda: not hub.api.active_servers(), f"{hub.name}: sessions stopped", 180)
    finally:
        cleanup_jobs(slurm, users)


# -- one configuration -----------------------------------------------------------------------

def count_window(hub: ThrowawayHub, shim: CallShim, window: float) -> dict:
    """Slurm calls and CPU of the hub and slurmctld over ``window`` seconds from now."""
    ctld = slurmctld_pid()
    cpu0 = (cpu_seconds(hub.proc.pid), cpu_seconds(ctld))
    t0 = time.time()
    time.sleep(window)
    t1 = time.time()
    cpu1 = (cpu_seconds(hub.proc.pid), cpu_seconds(ctld))
    calls = shim.calls(t0, t1)
    per_min = 60 / (t1 - t0)
    cpu = [round((b - a) * per_min, 2) if a is not None and b is not None else None
           for a, b in zip(cpu0, cpu1, strict=True)]
    return {
        "window_s": round(t1 - t0, 2),
        "calls": dict(sorted(calls.items())),
        "calls_per_min": round(sum(calls.values()) * per_min, 1),
        "squeue_per_min": round(calls["squeue"] * per_min, 1),
        "hub_cpu_s_per_min": cpu[0],
        "slurmctld_cpu_s_per_min": cpu[1],
    }


def run_config(hub: ThrowawayHub, kind: str, n: int, slurm, shim: CallShim, args) -> dict:
    users = user_names(n)
    started = time.monotonic()
    try:
        failures = start_sessions(hub, kind, users, slurm, timeout=120 + 2 * n)
        time.sleep(args.settle)
        result = count_window(hub, shim, args.window)
        still = len([u for u in users if u in hub.api.active_servers()])
        if still != n:
            raise BenchmarkError(f"{hub.name}: only {still} of {n} sessions lived through "
                                 "the window; see the hub log")
    finally:
        stop_sessions(hub, slurm, users)
    result["sessions"] = n
    result["failed_spawns"] = len(failures)
    result["failure_reasons"] = sorted({_reason(line) for line in failures})
    result["config_wall_s"] = round(time.monotonic() - started, 1)
    print(f"N={n:3d}  {kind:5s}  {result['calls_per_min']:8.1f} calls/min  "
          f"{result['calls']}  ({len(failures)} failed spawn(s) retried)", flush=True)
    return result


def _reason(line: str) -> str:
    """A hub log line of a failed spawn without its timestamp, user and job id."""
    text = line.split("'s server : ", 1)[-1]
    return re.sub(r"\d+", "N", re.sub(r"^\d{3} ", "", text))


# -- report ----------------------------------------------------------------------------------

def summarize(results: dict[str, dict[int, dict]], sizes: list[int]) -> dict:
    ratios = {}
    for n in sizes:
        ours, stock = results["ours"][n]["calls_per_min"], results["stock"][n]["calls_per_min"]
        ratios[n] = round(stock / ours, 1) if ours else None
    ours = [results["ours"][n]["calls_per_min"] for n in sizes]
    flat = max(ours) <= FLAT_FACTOR * max(min(ours), 1e-9) if len(sizes) > 1 else None
    return {
        "benchmark": "controller_load",
        "sessions_are": "pending Slurm jobs (account benchmarks at GrpJobs=0)",
        "results": {k: {str(n): v for n, v in r.items()} for k, r in results.items()},
        "stock_over_ours": {str(n): r for n, r in ratios.items()},
        "ours_flat_in_n": flat,
        "ours_max_over_min": round(max(ours) / max(min(ours), 1e-9), 2),
    }


def print_report(summary: dict, sizes: list[int]) -> None:
    res = summary["results"]
    print("\nSlurm CLI calls per minute, sessions = pending jobs")
    print(f"{'N':>4s} {'ours':>9s} {'stock':>9s} {'stock/ours':>10s}   "
          f"{'hub CPU s/min':>15s}   {'slurmctld CPU s/min':>19s}")
    print(f"{'':>4s} {'':>9s} {'':>9s} {'':>10s}   {'ours':>7s} {'stock':>7s}   "
          f"{'ours':>9s} {'stock':>9s}")
    for n in sizes:
        o, s = res["ours"][str(n)], res["stock"][str(n)]
        ratio = summary["stock_over_ours"][str(n)]
        print(f"{n:4d} {o['calls_per_min']:9.1f} {s['calls_per_min']:9.1f} "
              f"{ratio if ratio is not None else 'n/a':>10}   "
              f"{_cell(o['hub_cpu_s_per_min'], 7)} {_cell(s['hub_cpu_s_per_min'], 7)}   "
              f"{_cell(o['slurmctld_cpu_s_per_min'], 9)} "
              f"{_cell(s['slurmctld_cpu_s_per_min'], 9)}")
    for n in sizes:
        print(f"stock/ours at N={n}: {summary['stock_over_ours'][str(n)]}")
    for kind in KINDS:
        failed = {n: res[kind][str(n)]["failed_spawns"] for n in sizes}
        if any(failed.values()):
            reasons = sorted({r for n in sizes for r in res[kind][str(n)]["failure_reasons"]})
            print(f"{kind}: spawns that failed while N sessions started at once (retried "
                  f"before the window), by N: {failed}")
            for reason in reasons:
                print(f"  {reason}")
    verdict = {True: "met", False: "NOT met", None: "n/a (one N)"}[summary["ours_flat_in_n"]]
    print(f"target 'ours flat in N' (max/min ≤ {FLAT_FACTOR}): {verdict} "
          f"(max/min = {summary['ours_max_over_min']})")


def _cell(value, width: int) -> str:
    return f"{value:{width}.2f}" if value is not None else f"{'n/a':>{width}s}"


# -- setup -----------------------------------------------------------------------------------

def measure(args, stack: ExitStack) -> dict:
    require_root()
    slurm = root_client()
    users = user_names(args.sizes[-1])
    ensure_benchmark_users(slurm, users)
    cleanup_jobs(slurm, users)
    # exits in reverse: hubs stopped, then leftover jobs cancelled, then the limit reset
    stack.enter_context(jobs_held_pending(slurm))
    stack.callback(cleanup_jobs, slurm, users)
    workdir = Path(tempfile.mkdtemp(prefix="wb-controller-load-"))
    stack.push(lambda exc_type, _e, _tb: drop_workdir(workdir, args.keep_logs or exc_type))
    shim = CallShim(workdir)
    shim.install()
    hubs = start_hubs(stack, workdir, args, users,
                      partition_address(slurm, JobShape().partition),
                      int(args.window + args.settle + 900), str(shim.bindir))
    results: dict[str, dict[int, dict]] = {k: {} for k in KINDS}
    for i, n in enumerate(args.sizes):
        for kind in (KINDS if i % 2 == 0 else KINDS[::-1]):
            results[kind][n] = run_config(hubs[kind], kind, n, slurm, shim, args)
    return summarize(results, args.sizes)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_benchmark("controller_load", args, measure, lambda s: print_report(s, args.sizes))


if __name__ == "__main__":
    sys.exit(main())
