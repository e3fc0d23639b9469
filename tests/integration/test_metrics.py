"""Metrics an operator scrapes, on the real hub and cluster: who may scrape, the exporter's
figures against `workbench allocations show --json` and squeue, and a real Prometheus
(Debian's) scraping the hub's /hub/metrics and the exporter through the hub's proxy."""

import json
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.sessions import start_bob_cpu
from workbench import metrics, services
from workbench.slurm import queries

pytestmark = pytest.mark.slurm

EXPORTER = "services/metrics/metrics"
#: the dashboards' shared cache ages the exporter reads through (DashboardSettings)
LIVE_MAX_AGE, BUDGETS_MAX_AGE = 10, 60


@pytest.fixture
def scraper(factory_home) -> str:
    """The token of the hub's `prometheus` service: it holds the metrics role."""
    return (factory_home.secrets / f"service-{services.SCRAPER}-token").read_text().strip()


def scrape(hub_url: str, token: str, path: str = EXPORTER) -> dict:
    """{name: {labels (sorted tuple): value}} of one scrape; of the exporter, once it has
    taken its first reading (in the background, from its start: until then a scrape shows
    no Slurm figures), for up to a minute."""
    deadline = time.monotonic() + 60
    while True:
        r = requests.get(hub_url + path, headers={"Authorization": f"Bearer {token}"},
                         timeout=30)
        assert r.status_code == 200, r.text[:300]
        out: dict = {}
        for fam in text_string_to_metric_families(r.text):
            out.setdefault(fam.name, {})  # a family with no series now (no session) is declared
            for s in fam.samples:
                out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
        if path != EXPORTER or "workbench_slurm_controller_up" in out or \
                time.monotonic() > deadline:
            return out
        time.sleep(1)


def allocations_json() -> dict:
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", "allocations", "show",
                           "--json"], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def test_only_the_metrics_role_scrapes_the_hub_and_the_exporter(hub_url, hub_api, scraper):
    bob = hub_api("bob")
    for path in ("hub/metrics", EXPORTER):
        assert requests.get(hub_url + path, timeout=30).status_code in (401, 403), path
        r = requests.get(hub_url + path, headers=bob.headers, timeout=30)
        assert r.status_code == 403, (path, r.status_code)
    hub = scrape(hub_url, scraper, "hub/metrics")
    assert "jupyterhub_running_servers" in hub
    ours = scrape(hub_url, scraper)
    assert set(ours) >= {"workbench_sessions", "workbench_gpu_hours_granted",
                         "workbench_service_up", "workbench_slurm_calls_total",
                         "workbench_session_pending_seconds_count"}
    # every registered service answers on the local factory (the metrics service too)
    ups = {dict(k)["service"]: v for k, v in ours["workbench_service_up"].items()}
    assert ups == {s.name: 1.0 for s in services.registry(_site())}



def _hub_calls(hub_url, scraper) -> dict:
    return {dict(k)["command"]: v for k, v in
            scrape(hub_url, scraper, "hub/metrics").get("workbench_slurm_calls_total",
                                                        {}).items()}


def test_the_hubs_own_slurm_calls_are_counted_on_its_metrics(hub_url, hub_api, scraper,
                                                             wait_for):
    before = _hub_calls(hub_url, scraper)
    bob = start_bob_cpu(hub_api("bob"), wait_for)
    after = _hub_calls(hub_url, scraper)
    assert after.get("sbatch", 0) >= before.get("sbatch", 0) + 1, (before, after)
    assert after.get("squeue", 0) > before.get("squeue", 0), (before, after)
    bob.delete(f"{bob.base}/users/bob/server")
    wait_for(lambda: _hub_calls(hub_url, scraper).get("scancel", 0)
             >= before.get("scancel", 0) + 1, "bob's scancel counted")


def _site():
    from workbench.hubconfig import Site
    return Site.from_env()


def test_the_figures_agree_with_allocations_show_and_squeue(hub_url, scraper, slurm, wait_for):
    report = allocations_json()
    ours = scrape(hub_url, scraper)
    # GPUs in use during the budgets' age: running now, or ended within it (squeue keeps
    # finished jobs for a few minutes)
    since = datetime.now(UTC) - timedelta(seconds=BUDGETS_MAX_AGE + 5)
    running_gpus = sum(j.gpus for j in slurm.run(queries.jobs()) if j.state.is_running
                       or (not j.state.is_active and j.end_time is not None
                           and j.end_time >= since))
    for p in report["projects"]:
        key = (("programme", p["programme"]), ("project", p["project"]))
        assert ours["workbench_gpu_hours_granted"][key] == p["granted_gpu_hours"]
        # the exporter's budgets are up to a minute older than the report's own sacct
        slack = running_gpus * (BUDGETS_MAX_AGE + 5) / 3600 + 1e-3
        assert abs(ours["workbench_gpu_hours_used"][key] - p["used_gpu_hours"]) <= slack
    for prog in report["programmes"]:
        reserved = sum(prog["reserved_gpus"].values())
        if reserved:
            key = lambda state, n=prog["programme"]: (("programme", n), ("state", state))  # noqa
            got = ours["workbench_reserved_gpus"]
            assert got[key("held")] + got[key("free")] == reserved

    def agree():
        jobs = slurm.run(queries.jobs())
        expected: dict = {}
        allocs = _allocs()
        for j in metrics.sessions(jobs, socket.gethostname()):
            prog = allocs.programme_of(j.account)
            state = "running" if j.state.is_running else "pending"
            key = (("partition", j.partition), ("programme", prog.name if prog else ""),
                   ("state", state))
            expected[key] = expected.get(key, 0) + 1
        got = {k: v for k, v in scrape(hub_url, scraper).get("workbench_sessions", {}).items()
               if v}
        return got == expected or None
    # squeue and the exporter's cached squeue (at most LIVE_MAX_AGE old) agree; sessions
    # others start meanwhile may need one more round
    wait_for(agree, "workbench_sessions agrees with squeue", 4 * LIVE_MAX_AGE)


def _allocs():
    from workbench.allocations.loader import cached
    return cached()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _query(base: str, promql: str) -> list:
    r = requests.get(f"{base}/api/v1/query", params={"query": promql}, timeout=10)
    r.raise_for_status()
    return r.json()["data"]["result"]


def test_a_real_prometheus_scrapes_both_endpoints(hub_url, scraper, tmp_path, wait_for):
    hub = urlparse(hub_url)
    token = tmp_path / "token"
    token.write_text(scraper)
    token.chmod(0o600)
    jobs = [{"job_name": name, "metrics_path": path, "scrape_interval": "1s",
             "scrape_timeout": "1s",
             "authorization": {"type": "Bearer", "credentials_file": str(token)},
             "static_configs": [{"targets": [hub.netloc]}]}
            for name, path in (("jupyterhub", "/hub/metrics"), ("workbench", "/" + EXPORTER))]
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({"global": {"scrape_interval": "1s",
                                             "evaluation_interval": "1s"},
                                  "scrape_configs": jobs}))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen(
        ["/usr/bin/prometheus", f"--config.file={config}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        def both_up():
            r = _safe(_query, base, "up") or []
            return r if len(r) == 2 and all(x["value"][1] == "1" for x in r) else None
        up = wait_for(both_up, "up == 1 for both jobs", 60)
        assert {x["metric"]["job"] for x in up} == {"jupyterhub", "workbench"}
        granted = {p["project"]: p["granted_gpu_hours"] for p in allocations_json()["projects"]}
        r = wait_for(lambda: _safe(_query, base,
                                   'workbench_gpu_hours_granted{project="research-medai"}'),
                     "workbench_gpu_hours_granted in Prometheus", 30)
        assert float(r[0]["value"][1]) == granted["research-medai"]
        assert r[0]["metric"]["job"] == "workbench"
        assert wait_for(lambda: _safe(_query, base, "jupyterhub_running_servers"),
                        "jupyterhub_running_servers in Prometheus", 30)
        assert wait_for(lambda: _safe(_query, base, "workbench_slurm_controller_up == 1"),
                        "the controller answers", 30)
        took = _query(base, 'scrape_duration_seconds{job="workbench"}')
        print(f"exporter scrape: {float(took[0]['value'][1]) * 1000:.0f} ms")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _safe(fn, *args):
    try:
        return fn(*args)
    except requests.RequestException:
        return None

