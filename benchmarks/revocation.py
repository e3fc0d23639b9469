"""Revocation latency and per-request cost of the revocation guard, against stock single-user
auth, in the same run.

Starts alice's session through the running hub (a real Slurm job), then starts two more
``jupyterhub-singleuser`` servers on this machine, as alice, with that session's environment
(the same hub, token and OAuth client): **stock** (``extensions.revocation`` disabled: the
hub's ``HubOAuth`` with its 300 s cache) and **ours** (the guard, as in every session).
Both are called directly on their ports, alternately, so that both see the same load.

1. Per-request latency of the owner's requests (alice's token, ``GET api/contents``) and of
   a helper's (sam's, through a share), stock vs ours.
2. Revocation: alice shares with sam (the hub's sharing API), sam's token is warm on both
   servers, sam holds a kernel websocket on each; the share is revoked; the time from the
   revocation (last allowed) to sam's first refused HTTP request, and to his socket's close,
   on each server (stock: up to ``--cap`` seconds, then reported as not revoked).

Run as root on the machine of the local AI Factory (the hub up), with the project's
environment: ``/opt/aifactory/venv/bin/python benchmarks/revocation.py`` (~2 min).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import websocket

from workbench.daemons import wait_until
from workbench.paths import FactoryHome

HUB = "http://127.0.0.1:8000/"
SESSION = {"partition": "cpu", "account": "startup-helios", "gpus": 0, "cpus": 1,
           "memory": "2G", "runtime": "00:20:00"}


def token(user: str, password: str) -> str:
    r = requests.post(f"{HUB}hub/api/users/{user}/tokens", timeout=30,
                      json={"auth": {"username": user, "password": password},
                            "note": "revocation benchmark", "expires_in": 1800})
    r.raise_for_status()
    return r.json()["token"]


def session_env(user: str) -> dict[str, str]:
    """The environment of ``user``'s running jupyterhub-singleuser (its job, this machine)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            env = dict(line.split("=", 1) for line in
                       Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
                       if "=" in line)
        except (OSError, UnicodeDecodeError):
            continue
        if env.get("JUPYTERHUB_USER") == user and any(b"jupyterhub-singleuser" in c
                                                       for c in cmdline):
            return env
    raise RuntimeError(f"no jupyterhub-singleuser of {user} on this machine")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict, guard: bool, workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = workdir / f"{'ours' if guard else 'stock'}.json"
    config.write_text(json.dumps({"ServerApp": {
        "jpserver_extensions": {"extensions.revocation": guard}}}))
    config.chmod(0o644)
    prefix = env["JUPYTERHUB_SERVICE_PREFIX"]
    run_env = {**env, "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}{prefix}"}
    log = open(workdir / f"{config.stem}.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyterhub-singleuser"), f"--config={config}",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.open_browser=False"],
        env=run_env, user=env["JUPYTERHUB_USER"], cwd=env.get("HOME", "/tmp"),
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}{prefix}"
    wait_until(lambda: _answers(url + "api/status"), f"{config.stem} server", 60)
    return proc, url


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code in (200, 403)
    except requests.ConnectionError:
        return False


def timed_gets(url: str, tok: str, n: int) -> list[float]:
    s = requests.Session()
    s.headers["Authorization"] = f"token {tok}"
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = s.get(url, timeout=30)
        out.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.status_code
    return out


def stats(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 2),
            "p95_ms": round(ms[int(len(ms) * 0.95) - 1], 2), "mean_ms": round(
                statistics.fmean(ms), 2)}


def kernel_socket(url: str, tok: str, kernel: str):
    ws = websocket.create_connection(
        url.replace("http://", "ws://") + f"api/kernels/{kernel}/channels",
        header=[f"Authorization: token {tok}"], timeout=10)
    ws.settimeout(0.05)
    return ws


def socket_closed(ws) -> bool:
    try:
        while True:
            opcode, _ = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return True
    except websocket.WebSocketTimeoutException:
        return not ws.connected
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=300,
                   help="requests per server and caller for the latency (default 300)")
    p.add_argument("--cap", type=float, default=20.0,
                   help="seconds to wait for a revocation to take effect (default 20)")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    password = FactoryHome.from_env().demo_password_file.read_text().strip()
    alice, sam = token("alice", password), token("sam", password)
    api = requests.Session()
    api.headers["Authorization"] = f"token {alice}"
    started_here = False
    user = api.get(f"{HUB}hub/api/users/alice").json()
    if not (user["servers"].get("") or {}).get("ready"):
        r = api.post(f"{HUB}hub/api/users/alice/server", json={"user_options": SESSION})
        r.raise_for_status()
        started_here = True
        wait_until(lambda: (api.get(f"{HUB}hub/api/users/alice").json()["servers"]
                            .get("") or {}).get("ready"), "alice's session", 120)
    env = session_env("alice")
    procs = []
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="wb-revocation-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        try:
            stock_proc, stock = start_server(env, False, workdir)
            procs.append(stock_proc)
            ours_proc, ours = start_server(env, True, workdir)
            procs.append(ours_proc)
            servers = {"stock": stock, "ours": ours}
            share = api.post(f"{HUB}hub/api/shares/alice/", json={"user": "sam"})
            share.raise_for_status()

            # 1. per-request latency, alternating servers in batches of 50
            lat = {(k, who): [] for k in servers for who in ("owner", "helper")}
            for _ in range(max(1, args.requests // 50)):
                for k, url in servers.items():
                    lat[(k, "owner")] += timed_gets(url + "api/contents", alice, 50)
                    lat[(k, "helper")] += timed_gets(url + "api/contents", sam, 50)
            results["latency"] = {f"{k}/{who}": stats(v) for (k, who), v in lat.items()}
            for who in ("owner", "helper"):
                results["latency"][f"added/{who}_median_ms"] = round(
                    results["latency"][f"ours/{who}"]["median_ms"] -
                    results["latency"][f"stock/{who}"]["median_ms"], 2)

            # 2. revocation: sam warm on both, a kernel socket on each, then revoke
            kernels = {k: api.post(url + "api/kernels", json={"name": "python3"}).json()["id"]
                       for k, url in servers.items()}
            sockets = {k: kernel_socket(url, sam, kernels[k]) for k, url in servers.items()}
            for url in servers.values():
                timed_gets(url + "api/contents", sam, 3)
            time.sleep(1)
            revoke = api.delete(f"{HUB}hub/api/shares/alice/")
            revoked_at = time.monotonic()
            assert revoke.status_code == 204, revoke.text
            http = {k: None for k in servers}
            ws = {k: None for k in servers}
            while time.monotonic() - revoked_at < args.cap and (
                    None in http.values() or None in ws.values()):
                for k, url in servers.items():
                    if http[k] is None and requests.get(
                            url + "api/contents", timeout=10,
                            headers={"Authorization": f"token {sam}"}).status_code == 403:
                        http[k] = round(time.monotonic() - revoked_at, 3)
                    if ws[k] is None and socket_closed(sockets[k]):
                        ws[k] = round(time.monotonic() - revoked_at, 3)
            results["revocation_s"] = {
                f"{k}/{kind}": (v if v is not None else f"not within {args.cap:.0f} s")
                for kind, found in (("http", http), ("websocket", ws))
                for k, v in found.items()}
            for k, url in servers.items():
                api.delete(url + f"api/kernels/{kernels[k]}")
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
            api.delete(f"{HUB}hub/api/shares/alice/")
            if started_here:
                api.delete(f"{HUB}hub/api/users/alice/server")
    print(f"{'':16}{'median ms':>10}{'p95 ms':>10}")
    for key, v in results["latency"].items():
        if isinstance(v, dict):
            print(f"{key:16}{v['median_ms']:>10}{v['p95_ms']:>10}")
    for who in ("owner", "helper"):
        print(f"added per request ({who}), median: "
              f"{results['latency'][f'added/{who}_median_ms']:+.2f} ms")
    for key, v in results["revocation_s"].items():
        print(f"revoked -> refused, {key}: {v}" + (" s" if isinstance(v, float) else ""))
    line = json.dumps(results)
    print(line)
    if args.json:
        Path(args.json).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
