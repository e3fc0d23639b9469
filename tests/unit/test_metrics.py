"""The workbench's Prometheus metrics (workbench.metrics) and their service
(extensions/metrics): the figures from recorded Slurm state, the text format, the hub's
metrics role, and who may scrape."""

import asyncio
import datetime as dt
import os
import re
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient
from traitlets.config import Config

from extensions.metrics.service import ROUTES, Exporter, MetricsService
from workbench import hubconfig, metrics, services
from workbench.allocations import machine_report
from workbench.audit import AuditLog
from workbench.dashboards.cache import Cached
from workbench.dashboards.history import jobs_frame
from workbench.dashboards.source import DashboardSettings
from workbench.help.store import HelpStore
from workbench.slurm import AccountedJob, Query
from workbench.slurm.models import Job, JobState
from workbench.tags import job_tag, session_job_name, worker_tag

from .test_allocations import NODES, demo
from .test_hostile_input import as_user, serve  # noqa: F401 (a fixture)
from .test_services import site

NOW = dt.datetime(2026, 11, 26, 15, 0, tzinfo=dt.UTC)
TAG = job_tag("hub1", "alice", "")


def job(job_id, state, partition="gpu", account="startup-helios", comment=TAG, gpus=0,
        gpu_type="", submit_min_ago=10):
    return Job(job_id, "jupyter-x", "alice", account, partition, state, comment=comment,
               gpus=gpus, gpu_type=gpu_type,
               submit_time=NOW - dt.timedelta(minutes=submit_min_ago),
               start_time=NOW if state is JobState.RUNNING else None)


JOBS = [
    job(1, JobState.RUNNING, gpus=2, gpu_type="h100"),
    job(2, JobState.PENDING, submit_min_ago=25),
    job(3, JobState.PENDING, account="research-medai", submit_min_ago=5),
    job(4, JobState.RUNNING, partition="cpu", account="industry-autotwin"),
    job(5, JobState.RUNNING, comment=worker_tag(TAG, 1)),          # a Dask worker: not counted
    job(6, JobState.RUNNING, comment=job_tag("other", "bob", "")),  # another hub's
    job(7, JobState.RUNNING, comment=""),                           # a batch job
    job(8, JobState.COMPLETED),                                     # gone
    job(9, JobState.RUNNING, account="research-medai", gpus=1, gpu_type="h100",
        comment=""),                                                # research holds 1 h100
]
USED_NODES = [replace(NODES[0], gpus_used=3, state="mixed"),
              replace(NODES[1], state="idle", flags=("DRAIN",)), *NODES[2:]]


def samples(text):
    """{(name, labels as a sorted tuple): value} of a text exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def readings(**kw):
    return metrics.Readings("hub1", jobs=JOBS, nodes=USED_NODES, allocations=demo(), **kw)


def expose(*families):
    class C:
        def collect(self):
            yield from families
    reg = CollectorRegistry(auto_describe=False)
    reg.register(C())
    return generate_latest(reg).decode()


def test_sessions_are_this_hubs_active_notebook_jobs_by_state_partition_programme():
    out = samples(expose(*metrics.families(readings(), NOW)))
    sess = {k[1]: v for k, v in out.items() if k[0] == "workbench_sessions"}
    assert sess == {
        (("partition", "gpu"), ("programme", "startups"), ("state", "running")): 1,
        (("partition", "gpu"), ("programme", "startups"), ("state", "pending")): 1,
        (("partition", "gpu"), ("programme", "research"), ("state", "pending")): 1,
        (("partition", "cpu"), ("programme", "industry"), ("state", "running")): 1}
    longest = {dict(k[1])["partition"]: v for k, v in out.items()
               if k[0] == "workbench_session_longest_pending_seconds"}
    assert longest == {"gpu": 25 * 60, "gpu-a100": 0, "cpu": 0}


def test_gpus_reserved_gpus_agree_with_the_allocations_report():
    out = samples(expose(*metrics.families(readings(), NOW)))
    gpus = {tuple(v for _, v in k[1]): v for k, v in out.items() if k[0] == "workbench_gpus"}
    assert gpus[("gpu", "allocated")] == 3
    assert gpus[("gpu", "idle")] == 1  # h100-2 is drained: its 4 are unavailable
    assert gpus[("gpu", "unavailable")] == 4
    assert gpus[("gpu-a100", "idle")] == 4
    reserved = {tuple(v for _, v in k[1]): v for k, v in out.items()
                if k[0] == "workbench_reserved_gpus"}
    rep = {p.programme: p for p in machine_report(demo(), USED_NODES, JOBS, ()).programmes}
    assert reserved == {("startups", "held"): 2, ("startups", "free"): 0,
                        ("research", "held"): 1, ("research", "free"): 1}
    assert rep["startups"].reserved_in_use == {"h100": 2}
    assert rep["research"].reserved_in_use == {"h100": 1}


def test_budgets_are_the_allocations_shows_json_rows():
    rows = [{"project": "startup-helios", "programme": "startups", "granted_gpu_hours": 500.0,
             "used_gpu_hours": 451.25}]
    out = samples(expose(*metrics.families(readings(budgets=rows), NOW)))
    key = (("programme", "startups"), ("project", "startup-helios"))
    assert out[("workbench_gpu_hours_granted", key)] == 500.0
    assert out[("workbench_gpu_hours_used", key)] == 451.25


def test_a_source_that_cannot_be_read_leaves_its_metrics_out():
    r = metrics.Readings("hub1", controller_up=False, services={"help": False})
    names = {f.name for f in metrics.families(r, NOW)}
    assert names == {"workbench_service_up", "workbench_slurm_controller_up",
                     "workbench_slurm_cache_age_seconds"}
    out = samples(expose(*metrics.families(r, NOW)))
    assert out[("workbench_slurm_controller_up", ())] == 0
    assert out[("workbench_service_up", (("service", "help"),))] == 0


def test_every_metric_has_help_a_unit_or_count_name_and_no_user_or_job_label():
    for spec in metrics.ALL:
        assert spec.name.startswith("workbench_") and len(spec.help) > 30
        assert not {"user", "job", "job_id", "owner"} & set(spec.labels)
        assert spec.kind in ("gauge", "counter")
        assert spec.kind != "counter" or spec.name.endswith("_total")
    assert len({s.name for s in metrics.ALL}) == len(metrics.ALL)


def _history(*rows):
    return jobs_frame([AccountedJob(i, str(i), name, "alice", "startup-helios", "gpu",
                                    "RUNNING", "0:0", "", submit, start, None, 0, 0, "", "")
                       for i, name, submit, start in rows])


def test_pending_time_of_each_started_session_is_observed_once():
    reg = CollectorRegistry()
    waits = metrics.SessionWaits(reg)
    t = NOW - dt.timedelta(hours=1)
    hist = _history((1, session_job_name("alice", ""), t, t + dt.timedelta(seconds=20)),
                    (2, session_job_name("bob", "big"), t, t + dt.timedelta(seconds=700)),
                    (3, "dask-workers", t, t + dt.timedelta(seconds=5)),   # not a session
                    (4, session_job_name("ida", ""), t, None))              # not started
    assert waits.observe(hist) == 2
    assert waits.observe(hist) == 0  # the history read again: nothing twice
    more = pd.concat([hist, _history((5, "jupyter-igor", t, t + dt.timedelta(seconds=3)))])
    assert waits.observe(more) == 1
    out = samples(generate_latest(reg).decode())
    count = out[("workbench_session_pending_seconds_count", ())]
    assert count == 3
    assert out[("workbench_session_pending_seconds_bucket", (("le", "30.0"),))] == 2
    assert out[("workbench_session_pending_seconds_sum", ())] == 723


def test_the_slurm_layers_calls_are_counted_by_command(tmp_path):
    reg = CollectorRegistry()
    calls = metrics.slurm_calls(reg)
    client = metrics.CountingSlurmClient(calls, bindir=str(tmp_path))
    fake = tmp_path / "squeue"
    fake.write_text("#!/bin/sh\necho '{}'\n")
    fake.chmod(0o755)
    client.run(Query("squeue", ("--json",), str))
    asyncio.run(client.arun(Query("squeue", ("--json",), str)))
    out = samples(generate_latest(reg).decode())
    assert out[("workbench_slurm_calls_total", (("command", "squeue"),))] == 2


def test_the_hub_keeps_its_metrics_to_the_metrics_role(tmp_path):
    s = site(tmp_path)
    c = Config()
    hubconfig.configure(c, s)
    assert c.JupyterHub.authenticate_prometheus is True
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    role = roles[services.METRICS_ROLE]
    assert set(role["scopes"]) == {"read:metrics", "access:services!service=metrics"}
    assert role["services"] == [services.SCRAPER] and not role.get("groups")
    # nobody else reads the metrics: the user, support and managers roles lack the scope
    assert [n for n, r in roles.items() if any(
        sc.startswith(("read:metrics", "access:services!service=metrics"))
        for sc in r["scopes"])] == [services.METRICS_ROLE]
    scraper = next(e for e in c.JupyterHub.services if e["name"] == services.SCRAPER)
    assert scraper["api_token"] == s.service_token(services.SCRAPER)
    assert "url" not in scraper and "command" not in scraper
    assert (tmp_path / "secrets" / "service-prometheus-token").stat().st_mode & 0o077 == 0
    exporter = next(e for e in c.JupyterHub.services if e["name"] == "metrics")
    assert exporter["url"] == "http://10.0.0.5:8095"
    assert "access-metrics" not in roles  # the metrics role is the one way in


def test_every_service_option_has_help():
    own = MetricsService.class_own_traits(config=True)
    assert {"hub_id", "service_check_every", "service_check_timeout", "refresh_every",
            "controller_answer_within"} <= set(own)
    assert [n for n, t in own.items() if not (t.help or "").strip()] == []


class FakeSource:
    """The dashboards' source as the exporter reads it; counts its reads."""

    def __init__(self, history):
        self.reads = 0
        self.history = SimpleNamespace(table=lambda: Cached(history, NOW.timestamp()))

    def jobs_now(self):
        self.reads += 1
        return Cached(JOBS, NOW.timestamp())

    def nodes_now(self):
        return Cached(USED_NODES, NOW.timestamp())

    def budgets(self):
        return Cached([{"project": "research-medai", "programme": "research",
                        "granted_gpu_hours": 1000.0, "used_gpu_hours": 2.5}], NOW.timestamp())

    def allocations(self):
        return demo()


def test_a_scrape_reads_the_caches_the_stores_and_the_services(tmp_path):
    audit = AuditLog(tmp_path / "audit.sqlite")
    for action, subject in (("dataset.opened", "grid-load"), ("dataset.opened", "grid-load"),
                            ("dataset.refused", "health-records"),
                            ("help.revoked", "alice/"), ("session.submit", "alice/")):
        audit.record("alice", action, subject)
    store = HelpStore(tmp_path / "help.sqlite")
    r = store.add("alice", "", "group:support", "help", "", 30, None)
    store.add_joined(r.id, "sam")
    s = site(tmp_path)
    t = NOW - dt.timedelta(hours=1)
    source = FakeSource(_history((1, "jupyter-alice", t, t + dt.timedelta(seconds=40))))
    reg = CollectorRegistry(auto_describe=False)
    ex = Exporter(s, "hub1", source, audit, store, metrics.slurm_calls(reg), reg,
                  check_every=60, check_timeout=0.5)
    asked = []

    async def answers(url):
        asked.append(url)
        return "help" in url
    ex._answers = answers
    s.home.pidfile("workbench-reconciler").parent.mkdir(parents=True, exist_ok=True)
    s.home.pidfile("workbench-reconciler").write_text(f"{os.getpid()}\n")

    async def read_twice_scrape_twice():
        await ex.refresh()
        await ex.refresh()
        reads = source.reads
        return ex.scrape().decode(), ex.scrape().decode(), reads
    first, second, reads = asyncio.run(read_twice_scrape_twice())
    out = samples(second)
    assert out[("workbench_dataset_opens_total",
                (("dataset", "grid-load"), ("result", "opened")))] == 2
    assert out[("workbench_dataset_opens_total",
                (("dataset", "health-records"), ("result", "refused")))] == 1
    assert out[("workbench_revocations_total", ())] == 1
    assert out[("workbench_help_shares_active", ())] == 1
    assert out[("workbench_help_requests_open", ())] == 1
    assert out[("workbench_session_pending_seconds_count", ())] == 1
    assert out[("workbench_gpu_hours_granted",
                (("programme", "research"), ("project", "research-medai")))] == 1000.0
    # the help service answers, the reconciler's process is alive, the rest are down; they
    # were checked once for both readings (check_every)
    ups = {dict(k[1])["service"]: v for k, v in out.items() if k[0] == "workbench_service_up"}
    assert set(ups) == {svc.name for svc in s.services()}
    assert {n for n, up in ups.items() if up} == {"help", "workbench-reconciler"}
    assert sorted(asked) == sorted(f"http://10.0.0.5:{svc.port}/services/{svc.name}/"
                                   for svc in s.services() if svc.port)
    # one read of the shared caches per reading; a scrape reads nothing
    assert reads == 2 and source.reads == 2
    assert "# HELP workbench_sessions " in first and "# TYPE workbench_sessions gauge" in first


#: a cluster whose controller and accounting do not answer: both ports closed (squeue then
#: retries until its MessageTimeout, 20 s, as when slurmctld is down; sacct fails at once)
SLURM_DOWN_CONF = """ClusterName=down
SlurmctldHost=localhost
SlurmctldPort=1
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=1
MessageTimeout=20
"""


async def test_a_scrape_answers_at_once_and_says_the_controller_is_down_while_slurm_does_not(
        tmp_path, as_user):  # noqa: F811 (the fixture imported above)
    """The service's app on a real Tornado server, its readings taken in the background by
    the real Slurm commands against a slurm.conf whose controller port is closed: every scrape
    answers within a second (Prometheus gives up after 10 s and marks the whole exporter
    down), and says the controller is down once squeue has waited controller_answer_within,
    long before the command's own timeout."""
    assert shutil.which("squeue"), "squeue is missing: bootstrap.sh installs slurm-wlm"
    conf = tmp_path / "slurm.conf"
    conf.write_text(SLURM_DOWN_CONF)
    settings = DashboardSettings(cache_dir=str(tmp_path / "cache"), slurm_conf=str(conf),
                                 slurm_timeout=2, audit_db=str(tmp_path / "audit.sqlite"),
                                 help_db=str(tmp_path / "help.sqlite"))
    app = MetricsService(refresh_every=1, controller_answer_within=0.5)
    exporter = app.make_exporter(site(tmp_path), settings)
    server, url = await serve(ROUTES, {"exporter": exporter}, "/services/metrics/")
    exporter.start()
    http = AsyncHTTPClient()
    took, said = [], []
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            r = await http.fetch(url + "metrics", headers={"Authorization": "token prometheus"},
                                 request_timeout=5)
            took.append(time.monotonic() - t0)
            said.append(samples(r.body.decode()).get(("workbench_slurm_controller_up", ())))
            if said[-1] == 0:
                break
            await asyncio.sleep(0.2)
        assert said[-1] == 0, said
        assert max(took) < 1.0, took
        # the reading is still waiting for squeue (its timeout is 2 s): the 0 was not a
        # reading's, which would have come only after that
        assert exporter.readings is None
        assert exporter.calls.labels(command="squeue")._value.get() == 1
    finally:
        server.stop()
        await asyncio.to_thread(exporter.stop, True)  # the reading ends within its timeouts
    assert exporter.readings is None or exporter.readings.controller_up is False


DEPLOY = Path(__file__).parents[2] / "deploy" / "prometheus"


def promtool(*args):
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: Debian's prometheus package (bootstrap.sh) ships it"
    proc = subprocess.run([tool, *args], capture_output=True, text=True, cwd=DEPLOY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_the_alert_rules_and_the_example_config_pass_promtool():
    assert "SUCCESS: 5 rules found" in promtool("check", "rules", "alerts.yml")
    promtool("check", "config", "--syntax-only", "prometheus.yml")
    # each alert fires on made-up series, and the pending one only where GPUs are idle
    promtool("test", "rules", "alerts_test.yml")


def test_the_alerts_use_only_metrics_that_exist():
    text = (DEPLOY / "alerts.yml").read_text()
    used = set(re.findall(r"\b(workbench_[a-z_]+)", text))
    assert used <= {s.name for s in metrics.ALL}
