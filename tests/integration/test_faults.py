"""Faults an operator meets, on the real local factory: a proxy that crashed, a session's job
relaunched by Slurm under the same id. Each time sessions must be reachable again at once,
not after the hub's next activity pass (5 minutes)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.integration.test_spawn_api import _server_token, jobs_of
from tests.sessions import start_bob_cpu
from workbench import daemons
from workbench.audit import AuditLog
from workbench.demo.hub import LocalHub
from workbench.hubapi import HubClient
from workbench.paths import FactoryHome

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

WORKBENCH = str(Path(sys.executable).parent / "workbench")
def _routes() -> dict:
    """The proxy's routing table, through the hub (the reconciler's token: scope proxy)."""
    hub = LocalHub()
    return HubClient(hub.site.hub_api_url,
                     hub.site.service_token("workbench-reconciler")).get("proxy")


def _kill_proxy(home: FactoryHome) -> None:
    pid = daemons.read_pid(home.pidfile("proxy"))
    assert pid, "the proxy is not running"
    os.kill(pid, 9)
    daemons.wait_until(lambda: not daemons.read_pid(home.pidfile("proxy")), "proxy gone", 10)


def _tail(path: Path, offset: int) -> str:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def _answers(api, hub_url) -> bool:
    try:
        return api.get(f"{hub_url}user/bob/api/status", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def test_a_crashed_proxy_is_back_with_every_route_when_up_returns(hub_api, wait_for, hub_url):
    api = start_bob_cpu(hub_api("bob"), wait_for)
    home = FactoryHome.from_env()
    _kill_proxy(home)
    t0 = time.monotonic()
    subprocess.run([WORKBENCH, "up"], check=True, capture_output=True)
    up_s = time.monotonic() - t0
    # at once: the session and every service through the new proxy
    assert _answers(api, hub_url), "bob's session unreachable after up"
    routes = _routes()
    assert "/user/bob/" in routes and "/services/catalogue/" in routes, sorted(routes)
    assert requests.get(f"{hub_url}services/help/", allow_redirects=False).status_code == 302
    print(f"proxy killed -> `workbench up` returned with the routes back in {up_s:.1f} s")


def test_a_proxy_restarted_by_something_else_gets_its_routes_from_the_reconciler(
        hub_api, wait_for, hub_url):
    """A unit's Restart=on-failure starts the proxy alone: nobody calls `up`."""
    api = start_bob_cpu(hub_api("bob"), wait_for)
    home = FactoryHome.from_env()
    hub_log, reconciler_log = home.logfile("jupyterhub"), home.logfile("workbench-reconciler")
    hub_from, rec_from = hub_log.stat().st_size, reconciler_log.stat().st_size
    _kill_proxy(home)
    # while the proxy is down the reconciler waits for it, saying so, instead of asking the
    # hub every 15 s (a 500 and a traceback in the hub's log each time)
    wait_for(lambda: "route sync waits for it" in _tail(reconciler_log, rec_from),
             "the reconciler notices the proxy is down", timeout=40, interval=1)
    assert "/hub/api/proxy" not in _tail(hub_log, hub_from)
    hub = LocalHub()
    assert hub.start_proxy()  # a bare proxy, as systemd would start it: no routes
    t0 = time.monotonic()
    assert "/user/bob/" not in _routes()
    wait_for(lambda: _answers(api, hub_url), "bob's session reachable again", timeout=30,
             interval=0.5)
    back_s = time.monotonic() - t0
    assert back_s <= hub.site.routes_interval + 5, back_s
    print(f"bare proxy restart -> routes back from the reconciler in {back_s:.1f} s")


def test_a_server_started_again_under_the_same_job_gets_the_route(hub_api, wait_for,
                                                                   hub_url, slurm):
    """What the port callback sees when Slurm relaunches a session's batch step after a
    controller failure: the same job, the same token, a new server on a new port."""
    api = start_bob_cpu(hub_api("bob"), wait_for)
    [job] = [j for j in jobs_of(slurm, "bob") if j.state.is_running]
    target = _routes()["/user/bob/"]["target"]
    host = target.split("//")[1].rsplit(":", 1)[0]
    # the new server: a plain HTTP server as bob on that node's address, another port
    new = subprocess.Popen(["sudo", "-u", "bob", sys.executable, "-u", "-m", "http.server", "0",
                            "--bind", host], stdout=subprocess.PIPE, text=True,
                           cwd="/tmp")
    try:
        line = new.stdout.readline()  # "Serving HTTP on HOST port N (...)"
        port = int(line.split(" port ")[1].split()[0])
        r = requests.post(f"{hub_url}hub/api/batchspawner", json={"port": port},
                          headers={"Authorization": f"token {_server_token(job.job_id)}"})
        assert r.status_code == 201, r.text
        # the route, the hub's record and what a browser reaches: the new server, at once
        assert _routes()["/user/bob/"]["target"] == f"http://{host}:{port}"
        assert api.get(f"{api.base}/users/bob").json()["servers"][""]["url"] == "/user/bob/"
        r = api.get(f"{hub_url}user/bob/api/status", allow_redirects=False)
        assert "SimpleHTTP" in r.headers.get("Server", ""), r.headers
        [rec] = AuditLog(LocalHub().site.audit_url).records("session.relaunched", actor="bob",
                                                             limit=1)
        assert rec.details["job_id"] == job.job_id and rec.details["port"] == port
    finally:
        new.terminate()
