"""The Monday-morning spawn storm: N users press Start within a second, more than the
partition holds; SlurmGPUSpawner vs stock SlurmSpawner under the same storm.

For each hub in turn (the two throwaway hubs of :mod:`_hubs`, every Slurm command through the
counting shim of :mod:`_cluster`), N benchmark users (wbbench001..., default 40) each
``POST /hub/api/users/NAME/server`` at moments spread evenly over ``--within`` seconds, and
then follow their spawn the way the spawn page does, on the progress event stream
(``GET /hub/api/users/NAME/server/progress``). Those that fit run until every one of them is
ready; the others wait, and what each is shown last is kept. Throughout, a prober times
``GET /hub/api/users/NAME`` every ``--probe-interval`` seconds (an idle baseline first). Every
request of the storm is the user's own, with a token the hub generated for them. Then
every server is stopped at once (concurrent ``DELETE``s) and the queue must hold no job of the
benchmark users within ``--stop-limit`` seconds.

Reported per hub: the POSTs' status codes, time to ready of those that fit, how many waiting
users were told why they wait (Slurm's reason, in its code or in words) and their place in the
queue, the hub API latency p50/p99/max (idle; in the burst, from the first POST until the
last fitting server is ready and every waiting user shown a message; over the whole storm,
hold included; during the stop), the hub's CPU (with the children it reaped: sudo, sbatch,
squeue...) and memory, slurmctld's CPU, Slurm calls per minute, the stop's codes and how
long the queue took to empty.

Run as root: /opt/aifactory/venv/bin/python benchmarks/storm.py
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import requests
from _cluster import (
    ACCOUNT,
    BenchmarkError,
    CallShim,
    JobShape,
    active_jobs,
    cleanup_jobs,
    cpu_seconds,
    ensure_benchmark_users,
    idle_gpus,
    partition_address,
    require_jobs_can_run,
    require_root,
    root_client,
    run_benchmark,
    slurmctld_pid,
    user_names,
    wait_until,
)
from _hubs import (
    HTTP_TIMEOUT,
    HubApi,
    ThrowawayHub,
    add_common_options,
    drop_workdir,
    start_hubs,
)
from controller_load import KINDS, LABELS

from workbench.slurm import queries
from workbench.waits import PENDING_REASONS

#: the storm's job: one a100 GPU for at most 10 minutes (all cancelled at the end anyway)
SHAPE = JobShape(runtime="00:10:00")
#: a waiting user is told their place when the message says e.g. "Position 3 of 36"
POSITION = re.compile(r"\b[Pp]osition \d+ of \d+")
#: a waiting user is told why when the message names Slurm's reason, as code or in words
REASONS = (*PENDING_REASONS, *PENDING_REASONS.values(), "limit holds it")
#: API latency goal during the storm (p99, seconds)
P99_GOAL_S = 1.0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=(
        f"Needs root. Creates Unix users wbbench001... and their associations in the Slurm "
        f"account {ACCOUNT} if missing. Jobs ask partition {SHAPE.partition} for "
        f"{SHAPE.gpus} {SHAPE.gpu_type} GPU for {SHAPE.runtime}; every job of the benchmark "
        "users is cancelled at the end, also on failure or Ctrl-C."))
    p.add_argument("--users", type=int, default=40,
                   help="users pressing Start (default 40); must be more than the partition "
                        "holds at once")
    p.add_argument("--within", type=float, default=1.0,
                   help="seconds over which the N POSTs are spread evenly (default 1.0)")
    p.add_argument("--probe-interval", type=float, default=0.1,
                   help="seconds between two API latency probes (default 0.1)")
    p.add_argument("--idle", type=float, default=10,
                   help="seconds of idle baseline probed before each storm (default 10)")
    p.add_argument("--timeout", type=float, default=180,
                   help="seconds from the first POST within which every session that fits "
                        "must be ready and every waiting user shown a message (default 180)")
    p.add_argument("--hold", type=float, default=20,
                   help="seconds the storm goes on after that (the waiting users' spawn "
                        "pages open), before every server is stopped (default 20)")
    p.add_argument("--stop-limit", type=float, default=60,
                   help="seconds after the stops within which the queue must hold no job of "
                        "the benchmark users (default 60)")
    p.add_argument("--kinds", default=",".join(KINDS),
                   help="hubs to storm, in this order (default ours,stock)")
    p.add_argument("--py-spy", metavar="PATH",
                   help="py-spy executable: record each hub's stacks during its storm "
                        "(--nonblocking, raw folded stacks) into the kept temporary directory")
    add_common_options(p, "logs, call log, profiles")
    args = p.parse_args(argv)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not args.kinds or any(k not in KINDS for k in args.kinds):
        p.error(f"--kinds takes {', '.join(KINDS)}, comma-separated")
    if not 2 <= args.users <= 200:
        p.error("--users must be between 2 and 200")
    if not 0 <= args.within <= 60:
        p.error("--within must be between 0 and 60 s")
    if not 0.01 <= args.probe_interval <= 5:
        p.error("--probe-interval must be between 0.01 and 5 s")
    if args.idle < 1 or args.timeout < 10 or args.hold < 0 or args.stop_limit < 1:
        p.error("--idle >= 1, --timeout >= 10, --hold >= 0 and --stop-limit >= 1 s")
    if args.py_spy:
        args.keep_logs = True
    return args


# -- what a waiting user is told ---------------------------------------------------------------

def told_why(message: str) -> bool:
    return any(r in message for r in REASONS)


def told_position(message: str) -> bool:
    return bool(POSITION.search(message))


def percentiles(values: list[float]) -> dict:
    """n, p50, p99 and max of ``values`` (seconds) in milliseconds."""
    if not values:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    ms = sorted(v * 1000 for v in values)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 1),
            "p99_ms": round(p99, 1), "max_ms": round(ms[-1], 1)}


# -- the prober and the users' spawn pages -----------------------------------------------------

class Prober(threading.Thread):
    """``GET /hub/api/users/NAME`` every ``interval`` s, NAME in turn with NAME's own token;
    (start, seconds, ok)."""

    def __init__(self, hub: ThrowawayHub, tokens: dict[str, str], interval: float):
        super().__init__(daemon=True)
        self.apis = [HubApi(hub.url, token) for token in tokens.values()]
        self.users = list(tokens)
        self.interval = interval
        self.samples: list[tuple[float, float, bool]] = []
        self.done = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.done.is_set():
            user, api = self.users[i % len(self.users)], self.apis[i % len(self.users)]
            i += 1
            t0 = time.perf_counter()
            try:
                ok = api.get(f"/users/{user}").status_code == 200
            except requests.RequestException:
                ok = False
            self.samples.append((t0, time.perf_counter() - t0, ok))
            self.done.wait(max(self.interval - (time.perf_counter() - t0), 0))

    def between(self, start: float, end: float) -> list[tuple[float, float, bool]]:
        return [s for s in self.samples if start <= s[0] < end]


class SpawnPage(threading.Thread):
    """One user's spawn with their own token: the POST at ``at`` (perf_counter), then the
    progress event stream until the spawn ends (ready, failed or cancelled by the stop)."""

    def __init__(self, hub: ThrowawayHub, user: str, token: str, options: dict, at: float):
        super().__init__(daemon=True)
        self.api = HubApi(hub.url, token)
        self.user = user
        self.options = options
        self.at = at
        self.sent: float | None = None  # when the POST went out (perf_counter)
        self.post_code: int | str | None = None
        self.post_s: float | None = None
        self.ready_s: float | None = None
        self.failed: str | None = None
        self.messages: list[tuple[float, str]] = []

    @property
    def last_message(self) -> str:
        return self.messages[-1][1] if self.messages else ""

    def run(self) -> None:
        time.sleep(max(self.at - time.perf_counter(), 0))
        self.sent = time.perf_counter()
        try:
            r = self.api.session.post(f"{self.api.base}/users/{self.user}/server",
                                      json={"user_options": self.options},
                                      timeout=HTTP_TIMEOUT)
            self.post_code = r.status_code
        except requests.RequestException as e:
            self.post_code = type(e).__name__
        self.post_s = time.perf_counter() - self.sent
        if self.post_code not in (201, 202):
            self.failed = f"POST {self.post_code}"
            return
        try:
            self._follow()
        except (requests.RequestException, ValueError) as e:
            self.failed = f"progress stream: {type(e).__name__}: {e}"

    def _follow(self) -> None:
        url = f"{self.api.base}/users/{self.user}/server/progress"
        with self.api.session.get(url, stream=True, timeout=(HTTP_TIMEOUT, None)) as r:
            if r.status_code != 200:
                self.failed = f"progress: {r.status_code}"
                return
            for line in r.iter_lines(decode_unicode=True):
                if not line or not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                self.messages.append((time.perf_counter() - self.sent,
                                      event.get("message", "")))
                if event.get("ready"):
                    self.ready_s = time.perf_counter() - self.sent
                    return
                if event.get("failed"):
                    self.failed = event.get("message", "failed")
                    return


# -- one storm ---------------------------------------------------------------------------------

def rss_mb(pid: int | None) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, TypeError):
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return round(int(found[1]) / 1024, 1) if found else None


class Usage:
    """CPU of the hub (with reaped children) and of slurmctld, the hub's memory, Slurm calls:
    taken at marks, differences between marks."""

    def __init__(self, hub: ThrowawayHub, shim: CallShim):
        self.hub, self.shim, self.ctld = hub, shim, slurmctld_pid()
        self.marks: dict[str, tuple[float, float | None, float | None]] = {}

    def mark(self, name: str) -> None:
        self.marks[name] = (time.time(), cpu_seconds(self.hub.proc.pid),
                            cpu_seconds(self.ctld))

    def between(self, a: str, b: str) -> dict:
        (t0, hub0, ctld0), (t1, hub1, ctld1) = self.marks[a], self.marks[b]
        seconds = t1 - t0
        calls = self.shim.calls(t0, t1)
        hub_cpu = hub1 - hub0 if hub0 is not None and hub1 is not None else None
        ctld_cpu = ctld1 - ctld0 if ctld0 is not None and ctld1 is not None else None
        return {
            "seconds": round(seconds, 1),
            "hub_cpu_s": _round(hub_cpu, 2),
            "hub_cpu_pct_of_one_core": _round(hub_cpu and 100 * hub_cpu / seconds, 1),
            "slurmctld_cpu_s": _round(ctld_cpu, 2),
            "slurm_calls": dict(sorted(calls.items())),
            "slurm_calls_per_min": round(sum(calls.values()) * 60 / seconds, 1),
        }


def _round(value, digits):
    return round(value, digits) if value is not None else None


def fits_now(slurm) -> int:
    return idle_gpus(slurm, SHAPE.partition) // SHAPE.gpus


def profiler(args, hub: ThrowawayHub) -> subprocess.Popen | None:
    if not args.py_spy:
        return None
    out = hub.workdir / "storm-profile.txt"
    return subprocess.Popen([args.py_spy, "record", "--pid", str(hub.proc.pid), "--nonblocking",
                             "--format", "raw", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def end_profiler(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def storm(hub: ThrowawayHub, kind: str, slurm, shim: CallShim, args) -> dict:
    users = user_names(args.users)
    options = SHAPE.user_options() if kind == "ours" else {}
    cleanup_jobs(slurm, users)
    fits = fits_now(slurm)
    if fits >= len(users):
        raise BenchmarkError(f"{fits} sessions fit in {SHAPE.partition} now: a storm of "
                             f"{len(users)} must ask more; raise --users")
    # squeue --json (Slurm 22.05) lists every job slurmctld holds, finished ones for
    # MinJobAge included: what each of our spawner's snapshots parses
    held = len(slurm.run(queries.jobs()))
    usage = Usage(hub, shim)
    tokens = {u: hub.api.user_token(u) for u in users}
    prober = Prober(hub, tokens, args.probe_interval)
    prober.start()
    pages: list[SpawnPage] = []
    spy = None
    try:
        time.sleep(args.idle)
        rss_idle = rss_mb(hub.proc.pid)
        spy = profiler(args, hub)
        t0 = time.perf_counter() + 0.5
        step = args.within / max(len(users) - 1, 1)
        pages = [SpawnPage(hub, u, tokens[u], options, t0 + i * step)
                 for i, u in enumerate(users)]
        usage.mark("storm")
        for page in pages:
            page.start()
        print(f"{kind}: {len(users)} users press Start within {args.within:g} s; "
              f"{fits} fit in {SHAPE.partition}", flush=True)
        wait_until(lambda: _settled(pages, fits), f"{kind}: {fits} sessions ready and the "
                   "others shown a message", args.timeout)
        t_settled = time.perf_counter()
        time.sleep(args.hold)
        spawns = _before_stop(pages, slurm)
        rss_storm = rss_mb(hub.proc.pid)
        usage.mark("stop")
        end_profiler(spy)
        t_stop = time.perf_counter()
        stop = stop_all(hub, slurm, tokens, args.stop_limit)
        usage.mark("stopped")
    finally:
        end_profiler(spy)
        prober.done.set()
        prober.join(10)
        cleanup_jobs(slurm, users)
    sent = [p.sent for p in pages if p.sent is not None]
    return {
        "users": len(users),
        "fit": fits,
        "jobs_slurmctld_held_before": held,
        "posts_sent_within_s": round(max(sent) - min(sent), 3),
        "post_codes": dict(Counter(str(p.post_code) for p in pages)),
        "post_s": percentiles([p.post_s for p in pages if p.post_s is not None]),
        "settled_s": round(t_settled - t0, 1),
        **spawns,
        "api_idle": _latency(prober.between(t0 - args.idle - 0.5, t0)),
        "api_burst": _latency(prober.between(t0, t_settled)),
        "api_storm": _latency(prober.between(t0, t_stop)),
        "api_stop": _latency(prober.between(t_stop, time.perf_counter())),
        "storm": usage.between("storm", "stop"),
        "stop": {**stop, **usage.between("stop", "stopped")},
        "hub_rss_mb": {"idle": rss_idle, "storm": rss_storm},
        "profile": str(hub.workdir / "storm-profile.txt") if spy else None,
    }


def _settled(pages: list[SpawnPage], fits: int) -> bool:
    ready = sum(p.ready_s is not None for p in pages)
    return ready >= fits and all(p.messages or p.failed for p in pages)


def _before_stop(pages: list[SpawnPage], slurm) -> dict:
    """The spawns as they stand before the stop (which ends the waiting ones, and which
    JupyterHub's progress stream may then report as "ready"): those ready, those failed, and
    the users still waiting, with what their spawn page shows last."""
    pending = {j.user: j for j in active_jobs(slurm, [p.user for p in pages])
               if j.state.is_pending}
    ready = sorted(p.ready_s for p in pages if p.ready_s is not None)
    failed = sorted({p.failed for p in pages if p.failed and p.ready_s is None})
    waiting = [p for p in pages if p.ready_s is None and p.failed is None]
    shown = {p.user: p.last_message for p in waiting}
    untold = [u for u, m in shown.items() if not told_why(m)]
    reasons = Counter(pending[u].reason for u in shown if u in pending)
    examples = sorted(set(shown.values()), key=lambda m: (not told_why(m), m))[:3]
    return {
        "ready": len(ready),
        "ready_s": [round(r, 1) for r in ready],
        "failed_spawns": failed,
        "waiting": len(waiting),
        "waiting_jobs_pending_in_slurm": sum(u in pending for u in shown),
        "slurm_reasons": dict(reasons),
        "told_why": len(waiting) - len(untold),
        "told_position": sum(told_position(m) for m in shown.values()),
        "not_told_why": untold,
        "messages_shown": examples,
    }


def _latency(samples: list[tuple[float, float, bool]]) -> dict:
    return {**percentiles([s for _, s, ok in samples if ok]),
            "errors": sum(not ok for *_, ok in samples)}


def stop_all(hub: ThrowawayHub, slurm, tokens: dict[str, str], limit: float) -> dict:
    """Every user DELETEs their server at once; the codes, seconds until squeue holds no
    job of theirs (None if some are left after ``limit`` s: ``jobs_left``) and until the hub
    has no server active."""
    users = list(tokens)
    apis = [HubApi(hub.url, tokens[u]) for u in users]
    t0 = time.perf_counter()

    def delete(pair) -> str:
        api, user = pair
        try:
            return str(api.session.delete(f"{api.base}/users/{user}/server",
                                          timeout=HTTP_TIMEOUT).status_code)
        except requests.RequestException as e:
            return type(e).__name__

    with ThreadPoolExecutor(len(users)) as pool:
        codes = Counter(pool.map(delete, zip(apis, users, strict=True)))
    out = {"delete_codes": dict(codes), "queue_cleared_s": None, "jobs_left": []}
    try:
        wait_until(lambda: not active_jobs(slurm, users), "queue empty",
                   max(limit - (time.perf_counter() - t0), 1))
        out["queue_cleared_s"] = round(time.perf_counter() - t0, 1)
    except BenchmarkError:
        out["jobs_left"] = [j.job_id for j in active_jobs(slurm, users)]
    wait_until(lambda: not hub.api.active_servers(), f"{hub.name}: servers stopped", 180)
    out["hub_stopped_s"] = round(time.perf_counter() - t0, 1)
    return out


# -- report ------------------------------------------------------------------------------------

def errors_of(r: dict) -> int:
    """POSTs not 201/202, failed spawns, probe errors, DELETEs not 202/204, jobs left."""
    bad_posts = sum(n for code, n in r["post_codes"].items() if code not in ("201", "202"))
    bad_deletes = sum(n for code, n in r["stop"]["delete_codes"].items()
                      if code not in ("202", "204"))
    probes = sum(r[k]["errors"] for k in ("api_idle", "api_storm", "api_stop"))  # burst ⊂ storm
    return (bad_posts + len(r["failed_spawns"]) + probes + bad_deletes
            + len(r["stop"]["jobs_left"]))


def summarize(results: dict[str, dict]) -> dict:
    for r in results.values():
        r["errors"] = errors_of(r)
        # judged on the burst (the POSTs until the last fitting server is ready and every
        # waiting user shown a message): the quiet hold after it would dilute the p99
        r["p99_goal_met"] = (r["api_burst"]["p99_ms"] or 0) < P99_GOAL_S * 1000
        r["all_waiting_told_why"] = not r["not_told_why"]
    ratios = {}
    if set(KINDS) <= set(results):
        o, s = results["ours"], results["stock"]
        for name, a, b in (("api_burst_p99", o["api_burst"]["p99_ms"],
                            s["api_burst"]["p99_ms"]),
                           ("slurm_calls_per_min", o["storm"]["slurm_calls_per_min"],
                            s["storm"]["slurm_calls_per_min"]),
                           ("hub_cpu_s", o["storm"]["hub_cpu_s"], s["storm"]["hub_cpu_s"])):
            ratios[name] = round(b / a, 2) if a and b is not None else None
    return {"benchmark": "storm", "shape": SHAPE.user_options(), "results": results,
            "stock_over_ours": ratios}


ROWS = (
    ("POST codes", lambda r: _codes(r["post_codes"])),
    ("POST p50/max ms", lambda r: f"{r['post_s']['p50_ms']}/{r['post_s']['max_ms']}"),
    ("fit / ready", lambda r: f"{r['fit']} / {r['ready']}"),
    ("jobs in squeue before", lambda r: str(r["jobs_slurmctld_held_before"])),
    ("time to ready s", lambda r: _span(r["ready_s"])),
    ("waiting / told why", lambda r: f"{r['waiting']} / {r['told_why']}"),
    ("... told position", lambda r: str(r["told_position"])),
    ("API idle p50/p99/max ms", lambda r: _lat(r["api_idle"])),
    ("API burst p50/p99/max ms", lambda r: _lat(r["api_burst"])),
    ("API storm p50/p99/max ms", lambda r: _lat(r["api_storm"])),
    ("API during stop p99/max", lambda r: f"{r['api_stop']['p99_ms']}/{r['api_stop']['max_ms']}"),
    ("hub CPU s (% one core)", lambda r: f"{r['storm']['hub_cpu_s']} "
                                         f"({r['storm']['hub_cpu_pct_of_one_core']}%)"),
    ("hub RSS MB idle/storm", lambda r: f"{r['hub_rss_mb']['idle']}/{r['hub_rss_mb']['storm']}"),
    ("slurmctld CPU s", lambda r: str(r["storm"]["slurmctld_cpu_s"])),
    ("Slurm calls/min", lambda r: str(r["storm"]["slurm_calls_per_min"])),
    ("DELETE codes", lambda r: _codes(r["stop"]["delete_codes"])),
    ("stop: hub / queue empty s", lambda r: f"{r['stop']['hub_stopped_s']} / "
                                            f"{r['stop']['queue_cleared_s']}"),
    ("errors", lambda r: str(r["errors"])),
)


def _codes(codes: dict) -> str:
    return " ".join(f"{n}×{c}" for c, n in sorted(codes.items()))


def _span(values: list[float]) -> str:
    return f"{values[0]}–{values[-1]}" if values else "none"


def _lat(lat: dict) -> str:
    return f"{lat['p50_ms']}/{lat['p99_ms']}/{lat['max_ms']}"


def print_report(summary: dict) -> None:
    res = summary["results"]
    kinds = [k for k in KINDS if k in res]
    print(f"\nspawn storm: {next(iter(res.values()))['users']} users, one "
          f"{SHAPE.gpu_type} GPU each, {SHAPE.partition}")
    print(f"{'':27s}" + "".join(f"{k:>28s}" for k in kinds))
    for label, cell in ROWS:
        print(f"{label:27s}" + "".join(f"{cell(res[k]):>28s}" for k in kinds))
    for name, ratio in summary["stock_over_ours"].items():
        print(f"stock/ours {name}: {ratio}")
    for k in kinds:
        r = res[k]
        print(f"\n{LABELS[k]}: shown to a waiting user: {r['messages_shown'][:1] or 'nothing'}")
        if r["not_told_why"]:
            print(f"  NOT told why they wait: {len(r['not_told_why'])} user(s)")
        for reason in r["failed_spawns"]:
            print(f"  failed spawn: {reason}")
        if r["stop"]["jobs_left"]:
            print(f"  jobs left after the stop limit: {r['stop']['jobs_left']}")
        verdict = "met" if r["p99_goal_met"] else "NOT met"
        print(f"  goals: 0 errors: {'met' if not r['errors'] else 'NOT met'}; API burst p99 < "
              f"{P99_GOAL_S:g} s: {verdict}; every waiting user told why: "
              f"{'met' if r['all_waiting_told_why'] else 'NOT met'}")


# -- setup -------------------------------------------------------------------------------------

def measure(args, stack: ExitStack) -> dict:
    require_root()
    slurm = root_client()
    users = user_names(args.users)
    ensure_benchmark_users(slurm, users)
    require_jobs_can_run(slurm)
    cleanup_jobs(slurm, users)
    stack.callback(cleanup_jobs, slurm, users)  # runs last: after the hubs stopped
    workdir = Path(tempfile.mkdtemp(prefix="wb-storm-"))
    stack.push(lambda exc_type, _e, _tb: drop_workdir(workdir, args.keep_logs or exc_type))
    shim = CallShim(workdir)
    shim.install()
    hubs = start_hubs(stack, workdir, args, users, partition_address(slurm, SHAPE.partition),
                      int(args.timeout + args.hold + 600), str(shim.bindir), SHAPE, args.kinds)
    results = {}
    for kind in args.kinds:
        results[kind] = storm(hubs[kind], kind, slurm, shim, args)
        print(f"{kind}: done ({results[kind]['ready']} ready, {results[kind]['waiting']} "
              "waited)", flush=True)
    summary = summarize(results)
    summary["checkout"] = args.checkout or None
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_benchmark("storm", args, measure, print_report)


if __name__ == "__main__":
    sys.exit(main())
