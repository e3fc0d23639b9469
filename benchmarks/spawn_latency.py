"""Start → server ready on an idle GPU node: SlurmGPUSpawner vs stock SlurmSpawner vs the floor.

Starts two throwaway JupyterHubs (one per spawner class, own ports, db, cookie secret and
proxy), then, alternating, for ``--runs`` rounds:

- ``ours``:  POST /hub/api/users/wbbench/server with the SlurmGPUSpawner options of one a100
  GPU on partition gpu-a100 until GET /hub/api/users/wbbench says ready (polled every 0.05 s);
- ``stock``: the same against batchspawner.SlurmSpawner with the same job shape (req_*);
- ``floor``: a bare ``python -m jupyter_server`` as wbbench until /api/status answers 200;
- ``singleuser``: the jobs' own server, ``jupyterhub-singleuser``, started directly as wbbench
  with a hub's environment, until it answers HTTP (no Slurm, no spawner: JupyterHub's share);
- ``ours_cmd`` / ``stock_cmd``: each spawner's whole job command (its launcher,
  ``workbench-singleuser`` or ``batchspawner-singleuser``, then ``jupyterhub-singleuser``)
  started the same way, its port callback answered by a stand-in, until the server answers.

Each server is stopped through the API and its job must be gone before the next run. Prints
medians, ours − floor, stock / ours, each spawner's own share (start → ready less Slurm's
dispatch of the job and less its job command alone), a breakdown of each spawn from the
hub logs, and the figures as JSON.
Run as root: /opt/aifactory/venv/bin/python benchmarks/spawn_latency.py
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import random
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from _cluster import (
    ACCOUNT,
    BenchmarkError,
    JobShape,
    cleanup_jobs,
    ensure_benchmark_users,
    job_start_time,
    others_active,
    partition_address,
    require_jobs_can_run,
    require_root,
    root_client,
    run_benchmark,
    wait_idle_gpu,
    wait_no_jobs,
)
from _hubs import (
    ThrowawayHub,
    add_common_options,
    drop_workdir,
    log_events,
    start_hubs,
)

from spawners.singleuser import free_port

USER = "wbbench"
HTTP_TIMEOUT_S = 30
LABELS = {"ours": "ours  (SlurmGPUSpawner)", "stock": "stock (batchspawner.SlurmSpawner)",
          "floor": "floor (bare jupyter server)",
          "singleuser": "jupyterhub-singleuser alone",
          "ours_cmd": "ours' job command alone", "stock_cmd": "stock's job command alone"}
#: each spawner's job command (launcher, then the server), run directly for its own share
JOB_COMMANDS = {"ours_cmd": ("workbench-singleuser", "jupyterhub-singleuser"),
                "stock_cmd": ("batchspawner-singleuser", "jupyterhub-singleuser")}
#: how to follow one spawn: hub log lines that mark its steps, the job id, the job's output
TRACE = {
    "ours": {"submitted": ": submitted job ", "port": "POST /hub/api/batchspawner",
             "started": ", server at ", "job_id": r": submitted job (\d+)",
             "job_log": ".jupyterhub-slurm-{job_id}.log"},
    "stock": {"submitted": "Job submitted. output:", "port": "POST /hub/api/batchspawner",
              "started": "Notebook server job ", "job_id": r"Job submitted\. output: (\d+)",
              "job_log": "jupyterhub_slurmspawner_{job_id}.log"},
}
#: the line of the job's output that says the single-user server listens
LISTENING = "Jupyter Server "
#: (name, from event, to event): consecutive steps, their sum is the whole start → ready
DISPATCH = "→ job started (Slurm)"
PHASES = [("POST → sbatch returned", "post", "submitted"),
          (DISPATCH, "submitted", "job_started"),
          ("→ port callback", "job_started", "port"),
          ("→ start() returned", "port", "started"),
          ("→ server listening", "started", "listening"),
          ("→ hub sees it ready", "listening", "ready")]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=(
        "Needs root, the local Slurm cluster (SLURM_CONF) and configurable-http-proxy. "
        f"Creates the Unix user {USER} and its Slurm association in account {ACCOUNT} if "
        "missing. Uses at most one GPU of partition gpu-a100 at a time."))
    p.add_argument("--runs", type=int, default=5, help="runs of each kind (default 5)")
    p.add_argument("--timeout", type=float, default=180,
                   help="seconds one spawn may take to be ready (default 180)")
    add_common_options(p, "logs")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


# -- one run of each kind --------------------------------------------------------------------

def spawn_run(hub: ThrowawayHub, kind: str, slurm, timeout: float) -> dict:
    """One start → ready through ``hub``'s API; the server is stopped and its job gone after."""
    options = JobShape().user_options() if kind == "ours" else {}
    wait_idle_gpu(slurm, JobShape().partition)
    # slurmctld starts batch jobs on a 1 s loop; a random phase keeps either spawner from
    # locking onto a lucky (or unlucky) moment of it, run after run
    time.sleep(random.uniform(0, 1))
    offset = hub.log_offset()
    post_wall, t0 = time.time(), time.perf_counter()
    try:
        hub.api.spawn(USER, options)
        seconds = hub.api.wait_ready(USER, t0, timeout)
    finally:
        hub.api.stop_and_wait(USER)
        wait_no_jobs(slurm, [USER])
    events = {"post": post_wall, "ready": post_wall + seconds,
              **trace_events(hub.log_since(offset), TRACE[kind])}
    phases = {name: round(events[b] - events[a], 3) if a in events and b in events else None
              for name, a, b in PHASES}
    return {"seconds": round(seconds, 3), "phases": phases}


def trace_events(hub_log: str, trace: dict) -> dict[str, float]:
    """When the spawn was submitted, the port reported, start() returned (hub log), the job
    started (slurmctld's log) and the server listened (the job's output file)."""
    markers = {k: trace[k] for k in ("submitted", "port", "started")}
    events = log_events(hub_log, markers)
    found = re.search(trace["job_id"], hub_log)
    if found:
        started = job_start_time(int(found[1]))
        if started is not None:
            events["job_started"] = started
        path = Path(pwd.getpwnam(USER).pw_dir) / trace["job_log"].format(job_id=found[1])
        try:
            events.update(log_events(path.read_text(errors="replace"),
                                     {"listening": LISTENING}))
        except OSError:
            pass
    return events


def _server_argv(env_bin: str, port: int, token: str) -> list[str]:
    return [f"{env_bin}/python", "-m", "jupyter_server", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            "--ServerApp.open_browser=False", f"--IdentityProvider.token={token}"]


def _singleuser_env(hub: ThrowawayHub, port: int) -> dict:
    """What the hub gives a job's jupyterhub-singleuser (a token the hub does not know: the
    server starts and answers, but nobody can log in to it)."""
    prefix = f"/user/{USER}/"
    return {"JUPYTERHUB_API_URL": f"http://127.0.0.1:{hub.ports.hub}/hub/api",
            "JUPYTERHUB_API_TOKEN": secrets.token_hex(16),
            "JUPYTERHUB_BASE_URL": "/", "JUPYTERHUB_SERVICE_PREFIX": prefix,
            "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}{prefix}",
            "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{USER}", "JUPYTERHUB_USER": USER,
            "JUPYTERHUB_SERVER_NAME": "",
            "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{prefix}oauth_callback",
            "JUPYTERHUB_OAUTH_SCOPES": f'["access:servers!user={USER}"]',
            "JUPYTERHUB_OAUTH_ACCESS_SCOPES": f'["access:servers!user={USER}"]'}


class PortSink:
    """Stands in for a hub's port callback (``POST .../batchspawner {"port": N}``) for the job
    commands run directly: answers 201 and hands the port over (:meth:`port`). A ``GET``
    (jupyterhub-singleuser asks its hub for the version before it starts listening) goes on
    to the real hub's API at ``hub_api`` and its answer comes back."""

    def __init__(self, hub_api: str):
        self.reported: list[int] = []
        self.arrived = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0))
                                  or b"{}")
                with sink.arrived:
                    sink.reported.append(body.get("port"))
                    sink.arrived.notify_all()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"message": "port recorded"}')

            def do_GET(self):
                path = self.path.removeprefix("/hub/api")
                reply = requests.get(hub_api.rstrip("/") + path, timeout=HTTP_TIMEOUT_S)
                self.send_response(reply.status_code)
                for name in ("Content-Type", "X-JupyterHub-Version"):
                    if name in reply.headers:
                        self.send_header(name, reply.headers[name])
                self.end_headers()
                self.wfile.write(reply.content)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.api_url = f"http://127.0.0.1:{self.server.server_address[1]}/hub/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def port(self, seen: int) -> int | None:
        """The port reported after the first ``seen`` reports, if any yet."""
        with self.arrived:
            return self.reported[seen] if len(self.reported) > seen else None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def floor_run(args, log: Path) -> dict:
    """A bare jupyter server as wbbench in its home, from exec to a 200 on /api/status."""
    port, token = free_port(), secrets.token_hex(16)
    return _direct_run(_server_argv(args.env_bin, port, token), args, {},
                       lambda: f"http://127.0.0.1:{port}/api/status",
                       {"Authorization": f"token {token}"}, lambda status: status == 200, log)


def singleuser_run(args, hub: ThrowawayHub, log: Path) -> dict:
    """The jobs' own server, jupyterhub-singleuser, started directly as wbbench (no Slurm, no
    spawner), from exec to its first HTTP answer (403: it wants a hub login)."""
    port = free_port()
    return _direct_run([f"{args.env_bin}/jupyterhub-singleuser"], args,
                       _singleuser_env(hub, port),
                       lambda: f"http://127.0.0.1:{port}/user/{USER}/api/status", {},
                       lambda status: True, log)


def job_command_run(kind: str, args, hub: ThrowawayHub, sink: PortSink, log: Path) -> dict:
    """A spawner's job command (launcher and server) started directly as wbbench, with the
    port callback going to ``sink``: from exec to the server's first HTTP answer on the port
    the launcher reported."""
    seen = len(sink.reported)
    env = {**_singleuser_env(hub, 0), "JUPYTERHUB_API_URL": sink.api_url}

    def url() -> str | None:
        port = sink.port(seen)
        return f"http://127.0.0.1:{port}/user/{USER}/api/status" if port else None

    return _direct_run([f"{args.env_bin}/{name}" for name in JOB_COMMANDS[kind]], args, env,
                       url, {}, lambda status: True, log)


def _direct_run(argv: list[str], args, env_extra: dict, url, headers: dict, ok,
                log: Path) -> dict:
    """Start ``argv`` as wbbench in its home; seconds from exec until ``url()`` (None while
    not known) answers ``ok``."""
    env_bin, timeout = args.env_bin, args.timeout
    user = pwd.getpwnam(USER)
    env = {"HOME": user.pw_dir, "USER": USER, "LOGNAME": USER, "SHELL": user.pw_shell,
           "PATH": f"{env_bin}:/usr/bin:/bin", "LANG": os.environ.get("LANG", "C.UTF-8"),
           **({"PYTHONPATH": args.checkout} if args.checkout else {}), **env_extra}
    with open(log, "ab") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, user=user.pw_uid, group=user.pw_gid, extra_groups=[],
                                cwd=user.pw_dir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while True:
            try:
                where = url()
                if where and ok(requests.get(where, headers=headers, timeout=5).status_code):
                    return {"seconds": round(time.perf_counter() - t0, 3)}
            except requests.ConnectionError:
                pass
            if proc.poll() is not None:
                raise BenchmarkError(f"{argv[0]} exited {proc.returncode}; see {log}")
            if time.perf_counter() - t0 > timeout:
                raise BenchmarkError(f"{argv[0]} not answering within {timeout:g} s")
            time.sleep(0.05)
    finally:
        _end(proc)


def _end(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# -- the rounds ------------------------------------------------------------------------------

def run_rounds(hubs: dict[str, ThrowawayHub], slurm, args, floor_log: Path,
               sink: PortSink) -> dict:
    """``args.runs`` rounds; each round runs every kind once, the order rotating per round."""
    kinds = list(LABELS)
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    for i in range(args.runs):
        order = kinds[i % len(kinds):] + kinds[:i % len(kinds)]
        for kind in order:
            others = others_active(slurm, [USER])
            if kind == "floor":
                run = floor_run(args, floor_log)
            elif kind == "singleuser":
                run = singleuser_run(args, hubs["ours"], floor_log)
            elif kind in JOB_COMMANDS:
                run = job_command_run(kind, args, hubs["ours"], sink, floor_log)
            else:
                run = spawn_run(hubs[kind], kind, slurm, args.timeout)
            run["other_jobs"] = others
            runs[kind].append(run)
            print(f"round {i + 1}/{args.runs}  {kind:10s}  {run['seconds']:7.3f} s"
                  f"  ({others} other job(s) on the cluster)", flush=True)
            time.sleep(1)
    return runs


def summarize(runs: dict[str, list[dict]]) -> dict:
    medians = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    phases = {}
    for kind in ("ours", "stock"):
        phases[kind] = {}
        for name, _, _ in PHASES:
            values = [r["phases"][name] for r in runs[kind] if r["phases"][name] is not None]
            phases[kind][name] = round(statistics.median(values), 3) if values else None
    return {
        "benchmark": "spawn_latency",
        "job_shape": JobShape().user_options(),
        "runs": {k: [r["seconds"] for r in v] for k, v in runs.items()},
        "runs_detail": runs,
        "runs_with_other_jobs": {k: sum(1 for r in v if r["other_jobs"]) for k, v in runs.items()},
        "median_s": {k: round(v, 3) for k, v in medians.items()},
        "ours_minus_floor_s": round(medians["ours"] - medians["floor"], 3),
        "stock_minus_floor_s": round(medians["stock"] - medians["floor"], 3),
        "stock_over_ours": round(medians["stock"] / medians["ours"], 3),
        "phases_median_s": phases,
        # what is left to the spawner and the hub once the job's own command (launcher and
        # single-user server) and Slurm's dispatch of the batch job (its scheduler's 1 s
        # loop) are taken out
        "singleuser_minus_floor_s": round(medians["singleuser"] - medians["floor"], 3),
        "ours_overhead_s": _overhead(runs["ours"], medians["ours_cmd"]),
        "stock_overhead_s": _overhead(runs["stock"], medians["stock_cmd"]),
        # the same less jupyterhub-singleuser alone instead (before the job commands were
        # measured: launchers that make the server start faster show here as a negative share)
        "ours_overhead_vs_singleuser_s": _overhead(runs["ours"], medians["singleuser"]),
        "stock_overhead_vs_singleuser_s": _overhead(runs["stock"], medians["singleuser"]),
    }


def _overhead(runs: list[dict], singleuser: float) -> float | None:
    """Median over runs of (start → ready − Slurm's dispatch) − ``singleuser`` (the median of
    the job's command, or of jupyterhub-singleuser, alone)."""
    values = [r["seconds"] - r["phases"][DISPATCH] for r in runs
              if r["phases"][DISPATCH] is not None]
    return round(statistics.median(values) - singleuser, 3) if values else None


def print_report(summary: dict) -> None:
    runs, med = summary["runs"], summary["median_s"]
    print(f"\nStart → server ready, {len(runs['ours'])} runs each, seconds")
    print(f"{'':36s} {'median':>7s} {'min':>7s} {'max':>7s}")
    for kind, label in LABELS.items():
        print(f"{label:36s} {med[kind]:7.3f} {min(runs[kind]):7.3f} {max(runs[kind]):7.3f}")
    busy = summary["runs_with_other_jobs"]
    if any(busy.values()):
        print(f"(runs that shared the cluster with other users' jobs: {busy}; Slurm's "
              "scheduling of ours and stock jobs then varies more)")
    print(f"\nours  − floor: {summary['ours_minus_floor_s']:+.3f} s")
    print(f"stock − floor: {summary['stock_minus_floor_s']:+.3f} s")
    print(f"stock / ours:  {summary['stock_over_ours']:.2f}")
    print(f"jupyterhub-singleuser alone − floor: {summary['singleuser_minus_floor_s']:+.3f} s "
          "(JupyterHub's single-user server, the same in every Slurm spawner)")
    for kind in ("ours", "stock"):
        value = summary[f"{kind}_overhead_s"]
        if value is not None:
            print(f"{kind:5s} − Slurm's dispatch − its job command alone: {value:+.3f} s "
                  "(the spawner's and the hub's own share)")
    print("\nWhere the time goes (medians from the hub logs, ms resolution), seconds")
    print(f"{'':26s} {'ours':>7s} {'stock':>7s}")
    for name, _, _ in PHASES:
        values = [summary["phases_median_s"][k][name] for k in ("ours", "stock")]
        cells = " ".join(f"{v:7.3f}" if v is not None else f"{'n/a':>7s}" for v in values)
        print(f"{name:26s} {cells}")


def measure(args, stack: ExitStack) -> dict:
    require_root()
    slurm = root_client()
    ensure_benchmark_users(slurm, [USER])
    require_jobs_can_run(slurm)
    cleanup_jobs(slurm, [USER])
    stack.callback(cleanup_jobs, slurm, [USER])  # runs last: after the hubs stopped
    workdir = Path(tempfile.mkdtemp(prefix="wb-spawn-latency-"))
    stack.push(lambda exc_type, _e, _tb: drop_workdir(workdir, args.keep_logs or exc_type))
    hubs = start_hubs(stack, workdir, args, [USER],
                      partition_address(slurm, JobShape().partition), start_timeout=300)
    sink = PortSink(f"http://127.0.0.1:{hubs['ours'].ports.hub}/hub/api")
    stack.callback(sink.close)
    runs = run_rounds(hubs, slurm, args, workdir / "floor-jupyter-server.log", sink)
    summary = summarize(runs)
    summary["checkout"] = args.checkout or None
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_benchmark("spawn_latency", args, measure, print_report)


if __name__ == "__main__":
    sys.exit(main())
