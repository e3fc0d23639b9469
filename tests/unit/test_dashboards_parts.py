"""The dashboards' shared cache (one call per max_age for every process), the bounded and
path-checked output tail, the widgets (driven without a kernel) and the Voila service's
lock-down."""

import asyncio
import getpass
import multiprocessing
import os
import time
from datetime import date, timedelta
from pathlib import Path
from queue import Empty
from types import SimpleNamespace

import pandas as pd
import pytest

from benchmarks._cluster import CallShim
from extensions.dashboards import service
from extensions.dashboards.manager import ManagerDashboard
from extensions.dashboards.table import DataTable
from tests.labextension import check_prebuilt
from workbench.dashboards import joboutput
from workbench.dashboards.cache import SharedCache
from workbench.dashboards.history import jobs_frame
from workbench.dashboards.source import DashboardSettings, DashboardSource
from workbench.slurm import Query, SlurmClient
from workbench.slurm.parse import parse_accounted_jobs

FIXTURES = Path(__file__).parent.parent / "fixtures"


def _date_query() -> Query[str]:
    # a real command, not Slurm: the cache does not care what it caches
    return Query("date", ("+%s.%N",), str.strip)


def _read(directory: str, bindir: str, results) -> None:
    cache = SharedCache(directory, SlurmClient(bindir=bindir))
    results.put(cache.get("clock", _date_query(), max_age=60).value)


@pytest.fixture
def shim(tmp_path):
    """``date`` and ``false`` behind wrappers that log each run (the benchmarks' counter)."""
    counter = CallShim(tmp_path / "shim", commands=("date", "false"))
    counter.install()
    return counter


def _runs(shim) -> dict:
    return dict(shim.calls(0, float("inf")))


def test_ten_processes_share_one_call(tmp_path, shim):
    results = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_read, args=(str(tmp_path / "cache"),
                                                          str(shim.bindir), results))
             for _ in range(10)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    answers = {results.get(timeout=5) for _ in procs}
    assert len(answers) == 1  # everyone got the one answer
    assert _runs(shim) == {"date": 1}


def test_an_answer_is_parsed_once_per_process_and_again_when_a_new_one_comes(tmp_path, shim):
    parsed = []

    def parse(text):
        parsed.append(text)
        return text.strip()

    query = Query("date", ("+%s.%N",), parse)
    cache = SharedCache(tmp_path / "cache", SlurmClient(bindir=str(shim.bindir)))
    first = cache.get("clock", query, max_age=60).value
    assert [cache.get("clock", query, max_age=60).value for _ in range(3)] == [first] * 3
    assert len(parsed) == 1  # a refresh that finds the answer fresh does not read it again
    time.sleep(0.05)
    assert cache.get("clock", query, max_age=0.01).value != first
    assert len(parsed) == 2 and _runs(shim) == {"date": 2}


def test_a_stale_answer_is_refreshed_and_a_failure_is_remembered(tmp_path, shim):
    cache = SharedCache(tmp_path / "cache", SlurmClient(bindir=str(shim.bindir)))
    first = cache.get("clock", _date_query(), max_age=60)
    assert cache.get("clock", _date_query(), max_age=60).value == first.value
    assert _runs(shim) == {"date": 1}
    time.sleep(0.05)
    assert cache.get("clock", _date_query(), max_age=0.01).value != first.value
    failing = Query("false", (), str)
    time.sleep(0.05)
    bad = cache.get("clock", failing, max_age=0.01)
    assert bad.error and bad.value is not None  # the last good answer, with the error
    assert cache.get("clock", failing, max_age=60).error  # remembered: no second call
    assert _runs(shim) == {"date": 2, "false": 1}


def test_output_tail_is_bounded_and_refuses_links_and_wrong_ids(tmp_path):
    me = getpass.getuser()
    log = tmp_path / ".jupyterhub-slurm-42.log"
    log.write_text("".join(f"line {i}\n" for i in range(10000)))
    path, text = joboutput.tail(me, 42, max_bytes=1000, max_lines=5, home=tmp_path)
    assert path == log and text.splitlines() == [f"line {i}" for i in range(9995, 10000)]
    _, short = joboutput.tail(me, "42", max_bytes=200, max_lines=1000, home=tmp_path)
    assert len(short) < 200 and short.splitlines()[0].startswith("line ")  # no cut line
    (tmp_path / "slurm-43.out").symlink_to("/etc/shadow")
    with pytest.raises(joboutput.OutputError, match="cannot be read"):
        joboutput.tail(me, 43, home=tmp_path)
    for bad in ("../../etc/shadow", "43; rm -rf /", ""):
        with pytest.raises(joboutput.OutputError, match="not a job id"):
            joboutput.tail(me, bad, home=tmp_path)
    with pytest.raises(joboutput.OutputError, match="No output file of job 44"):
        joboutput.tail(me, 44, home=tmp_path)
    with pytest.raises(joboutput.OutputError, match="no user"):
        joboutput.tail("no-such-user-xyz", 42)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file away")
def test_output_of_another_owner_is_not_shown(tmp_path):
    log = tmp_path / ".jupyterhub-slurm-45.log"
    log.write_text("secret\n")
    os.chown(log, 65534, 65534)
    with pytest.raises(joboutput.OutputError, match="does not belong"):
        joboutput.tail(getpass.getuser(), 45, home=tmp_path)


def test_table_filters_sorts_and_exports_csv():
    t = DataTable("usage")
    t.value = pd.DataFrame({"project": ["b-proj", "a-proj", "c-proj"], "h": [2.0, 5.0, 1.0]})
    assert "3 of 3 rows" in t._head.value
    assert t._filter is None  # the controls are made when asked for
    t.controls()
    assert t._sort.options[1:] == (("project", "project"), ("h", "h"))
    t._sort.value, t._order.value = "h", False
    assert t.shown["project"].tolist() == ["a-proj", "b-proj", "c-proj"]
    t._filter.value = "B-PR"
    assert t.shown["project"].tolist() == ["b-proj"]
    assert "1 of 3 rows" in t._head.value
    assert 'download="usage.csv"' in t._head.value and "base64," in t._head.value
    import base64
    data = base64.b64decode(t._head.value.split("base64,")[1].split('"')[0]).decode()
    assert data.splitlines() == ["project,h", "b-proj,2.0"]  # what is shown, all of it
    t.query = "nothing"
    assert "No rows match" in t._body.value
    t.value = pd.DataFrame({"who": ["<script>x</script>"]})
    t.query = ""
    assert "<script>" not in t._body.value


class RecordedSource(DashboardSource):
    """The real source over recorded history and budgets (no Slurm)."""

    def __init__(self, tmp_path):
        super().__init__(DashboardSettings(cache_dir=str(tmp_path)))
        self.jobs = jobs_frame(parse_accounted_jobs(
            (FIXTURES / "sacct-history-22.05.txt").read_text()))

    def budgets(self):
        from workbench.dashboards.cache import Cached
        return Cached([{"project": "startup-helios", "programme": "startups",
                        "granted_gpu_hours": 500, "used_gpu_hours": 5.5,
                        "remaining_gpu_hours": 494.5, "valid_from": "2026-01-01",
                        "valid_until": "2027-12-31", "active": True}], time.time())

    def nodes_now(self):
        from workbench.dashboards.cache import Cached
        from workbench.slurm.parse import parse_nodes
        return Cached(parse_nodes((FIXTURES / "sinfo-22.05.json").read_text()), time.time())

    def allocations(self):
        raise OSError("no allocations file in this test")


@pytest.fixture
def manager(tmp_path, monkeypatch):
    source = RecordedSource(tmp_path)
    from workbench.dashboards.cache import Cached
    monkeypatch.setattr(source.history, "table", lambda *a, **k: Cached(source.jobs, time.time()))
    monkeypatch.setattr(source.history, "covered_from", lambda: pd.Timestamp("2026-01-01",
                                                                             tz="UTC"))
    return ManagerDashboard(source)


def test_manager_dashboard_draws_tables_and_charts(manager):
    assert manager.error == ""
    assert manager.budgets.value["used GPU-hours"].tolist() == [5.5]
    assert manager.budgets_chart.figure is not None
    assert "allocations file cannot be read" in manager._error.value  # the rest still drawn
    manager.set_range("2026-11-24", "2026-11-26")
    assert manager.usage.value.set_index("project").loc["research-climate", "GPU-hours"] == 8.0
    assert manager._project.options
    manager.project = "startup-helios"
    assert set(manager.project_jobs.value["account"]) == {"startup-helios"}


@pytest.mark.parametrize("start,end,words", [
    (None, date(2026, 11, 26), "empty"), ("2026-11-26", "2026-11-01", "after the end"),
    (date.today() - timedelta(days=3650), date.today(), "shorter range")])
def test_manager_dashboard_says_what_is_wrong_with_a_range_and_keeps_the_tables(
        manager, start, end, words):
    before = manager.budgets.value
    manager.set_range(start, end)
    assert words in manager.error and words in manager._error.value
    assert manager.budgets.value is before


def test_a_project_without_jobs_says_so(manager):
    manager.set_range("2026-11-24", "2026-11-26")
    manager.source.jobs = manager.source.jobs[manager.source.jobs.account != "startup-helios"]
    manager.project = ""
    manager.project = "startup-helios"
    assert "has no jobs between" in manager.project_jobs.message


# -- the Voila service ----------------------------------------------------------------------

def test_the_service_loads_only_voila_and_lets_browsers_send_widget_messages_only(tmp_path):
    cfg = service.server_config(tmp_path, ["jupyterlab", "jupyter_server_proxy", "x.y",
                                           "voila.server_extension"])
    ext = cfg["ServerApp"]["jpserver_extensions"]
    assert [n for n, on in ext.items() if on] == ["voila.server_extension"]
    assert ext["x.y"] is False and ext["jupyter_server_proxy"] is False
    assert cfg["ServerApp"]["terminals_enabled"] is False
    types = cfg["MappingKernelManager"]["allowed_message_types"]
    assert "execute_request" not in types and "comm_msg" in types
    assert cfg["ServerApp"]["authorizer_class"] == (
        "extensions.dashboards.service.DashboardAuthorizer")


def test_the_authorizer_refuses_every_api_but_the_widget_websocket():
    class Req:
        method, path = "GET", "/services/x/api/kernels"  # the list, not one kernel

    handler = type("H", (), {"request": Req()})()
    user = type("U", (), {"username": "sam"})()
    auth = service.DashboardAuthorizer.__new__(service.DashboardAuthorizer)
    import logging
    auth.log = logging.getLogger("test")
    for resource, action in [("kernels", "write"), ("kernels", "read"), ("contents", "read"),
                             ("contents", "write"), ("terminals", "execute"),
                             ("sessions", "write"), ("files", "read"), ("server", "write")]:
        assert auth.is_authorized(handler, user, action, resource) is False
    assert ("kernels", "execute") in service.DashboardAuthorizer.ALLOWED


def test_each_service_root_holds_only_its_own_notebook(tmp_path):
    from workbench.paths import FactoryHome
    base, env = service.prepare("support-dashboard", FactoryHome(tmp_path))
    assert [p.name for p in (base / "root").iterdir()] == ["support.ipynb"]
    assert env["JUPYTERHUB_DEFAULT_URL"] == "/voila/render/support.ipynb"
    assert (base / "config" / "jupyter_server_config.json").exists()
    assert base.stat().st_mode & 0o077 == 0
    with pytest.raises(SystemExit):
        service.prepare("alice-dashboard", FactoryHome(tmp_path))


def test_the_services_draw_charts_with_their_own_prebuilt_renderer_only(tmp_path):
    import json

    meta = check_prebuilt(Path(service.__file__).parent / "js",
                          service.SHARE / "labextensions" / "@aifactory" / "dashboard-charts",
                          ("package.json", "src/index.js"))
    assert "jupyterlab-plotly" not in service.FRONTEND_EXTENSIONS
    assert meta["name"] in service.FRONTEND_EXTENSIONS
    # only the dashboard services find it (their JUPYTER_PATH), not the users' JupyterLab
    from workbench.paths import FactoryHome
    _, env = service.prepare("manager-dashboard", FactoryHome(tmp_path))
    assert env["JUPYTER_PATH"].split(os.pathsep)[0] == str(service.SHARE)
    cfg = json.loads((tmp_path / "dashboards" / "manager-dashboard" / "config" /
                      "jupyter_server_config.json").read_text())
    pool = cfg["DashboardKernelManager"]
    assert pool["pool_size"] == 1
    assert pool["warm_code"].startswith("import extensions.dashboards.manager\n")


async def test_a_view_gets_a_warm_kernel_from_the_pool_once_and_the_pool_is_never_culled(
        tmp_path):
    """Real kernels: the pooled one has run the warm code before a view asks, goes to one
    view only, and waits in the pool through culling."""
    warmed = tmp_path / "warmed"
    km = service.DashboardKernelManager(
        root_dir=str(tmp_path), pool_size=1, fill_delay=3600, cull_idle_timeout=1,
        warm_code=f"open({str(warmed)!r}, 'w').write('yes')")
    try:
        km._fill_pool()
        pooled = await km._pool[0]
        assert warmed.read_text() == "yes"  # warmed before any view
        km.get_kernel(pooled).last_activity -= timedelta(hours=1)
        await km.cull_kernel_if_idle(pooled)  # idle for an hour, but waiting in the pool
        assert pooled in km
        first = await km.start_kernel(kernel_name="python3", path="")
        assert first == pooled
        second = await km.start_kernel(kernel_name="python3", path="")
        assert second != first  # the pool was empty (refill 1 h later): a kernel of its own
        # a view's kernel nobody watches is shut down once cull_unwatched_after has passed
        km._born[second] -= km.cull_unwatched_after + 1
        await km.cull_kernel_if_idle(second)
        assert second not in km
    finally:
        await km.shutdown_all()


async def test_voilas_kernel_client_finds_a_reply_whose_wake_up_was_missed(tmp_path, caplog,
                                                                            monkeypatch):
    """The service's config gives every kernel client (Voila's executor makes its own with
    km.client()) a shell channel that polls again; a reply the first wait did not see (as
    when zmq's edge-triggered wake-up is missed) is still returned, and the miss is logged."""
    from jupyter_client.channels import AsyncZMQSocketChannel
    from traitlets.config import Config

    cfg = Config(service.server_config(tmp_path, []))
    km = service.DashboardKernelManager(config=cfg, root_dir=str(tmp_path))
    try:
        kernel_id = await km.start_kernel(kernel_name="python3", path="")
        client = km.get_kernel(kernel_id).client()
        assert isinstance(client, service.DashboardKernelClient)
        client.start_channels()
        await client.wait_for_ready(timeout=60)
        plain = AsyncZMQSocketChannel.get_msg
        missed = []

        async def miss_once(self, timeout=None):
            if not missed:  # the first wait does not see the reply, as on a missed wake-up
                missed.append(True)
                await asyncio.sleep(0.5)  # long enough for the reply to be there
                raise Empty
            return await plain(self, timeout)

        monkeypatch.setattr(AsyncZMQSocketChannel, "get_msg", miss_once)
        msg_id = client.execute("1 + 1")
        reply = await asyncio.wait_for(client.shell_channel.get_msg(), 30)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "ok"
        assert missed == [True]
        assert "missed wake-up" in caplog.text
        client.stop_channels()
    finally:
        await km.shutdown_all()


def test_the_shared_budgets_are_read_again_at_once_when_the_projects_change(tmp_path,
                                                                           monkeypatch):
    """An award (or its removal, or a grant edited in the file) shows in the managers' table
    at the next view, not up to a minute later; unchanged, one reading serves a minute."""
    import workbench.allocations

    reads = []

    def budgets(allocs, client):
        reads.append([p.name for p in allocs.projects])
        return [SimpleNamespace(as_dict=lambda p=p: {"project": p.name,
                                                     "granted_gpu_hours": p.gpu_hours})
                for p in allocs.projects]
    monkeypatch.setattr(workbench.allocations, "budgets", budgets)
    source = DashboardSource(DashboardSettings(cache_dir=str(tmp_path)), SlurmClient())
    projects = [SimpleNamespace(name="startup-helios", gpu_hours=500)]
    source.allocations = lambda: SimpleNamespace(projects=list(projects))

    def shown():
        return {(r["project"], r["granted_gpu_hours"]) for r in source.budgets().value}
    assert shown() == shown() == {("startup-helios", 500)}
    assert len(reads) == 1
    projects.append(SimpleNamespace(name="carla-ai", gpu_hours=50))  # awarded
    assert shown() == {("startup-helios", 500), ("carla-ai", 50)}
    projects.pop()  # removed again
    assert shown() == {("startup-helios", 500)}
    projects[0] = SimpleNamespace(name="startup-helios", gpu_hours=600)  # the file edited
    assert shown() == shown() == {("startup-helios", 600)}
    assert len(reads) == 4

    def unusable():
        raise workbench.allocations.AllocationError("allocations.yaml:3: a key written twice")
    source.allocations = unusable  # the last reading is shown meanwhile, as before
    assert shown() == {("startup-helios", 600)}
