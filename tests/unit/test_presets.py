"""Saved presets of the spawn form without a hub: their store (SQLite and PostgreSQL), the
input rules, whether a preset still fits a cluster built from recorded Slurm output, and the
form's part (listed, the last used one marked; a start from one marks it used)."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from jupyterhub.spawner import SpawnException

from spawners import presets as hub_presets
from spawners.form import options_from_form
from spawners.options import ClusterOptionsMixin
from tests.pg import new_database, postgres_url  # noqa: F401
from workbench import resources
from workbench.presets import (
    MAX_NAME,
    MAX_PRESETS,
    PresetError,
    PresetStore,
    check_name,
    check_options,
    why_not,
)
from workbench.resources import InvalidRequest, validate_request
from workbench.slurm import queries
from workbench.slurm.models import GpuUse
from workbench.slurm.parse import parse_assoc_mgr, parse_nodes, parse_partitions

FIXTURES = Path(__file__).parent.parent / "fixtures"
SINFO = (FIXTURES / "sinfo-22.05.json").read_text()
PARTITIONS = (FIXTURES / "scontrol-partition-22.05.txt").read_text()
ASSOC_BOB = (FIXTURES / "scontrol-assoc-mgr-22.05.txt").read_text()  # research-climate, -medai
ALLOCATIONS = """\
programmes:
  research:
    description: Public research
    projects:
      research-medai: {members: [bob], gpu_hours: 10}
      research-climate: {members: [bob], gpu_hours: 100, valid_until: 2025-06-30}
"""

USUAL = {"partition": "gpu", "account": "research-medai", "gpus": 2, "gpu_type": "h100",
         "cpus": 8, "memory": "32G", "runtime": "02:00:00"}


_clusters = itertools.count()  # each fake a cluster of its own

class RecordedSlurm:
    """Answers the cluster view's queries from recorded output of the local cluster
    (``sinfo --json``, ``scontrol show partition``, ``scontrol show assoc_mgr`` for bob);
    ``used_hours`` of research-medai's 10 GPU-hours are spent (one sacct row). A cluster of
    its own: nothing shared with another test's through the process's snapshots."""

    slurm_conf = None

    def __init__(self, partitions: str = PARTITIONS, used_hours: float = 1):
        self.partitions, self.used_s = partitions, int(used_hours * 3600)
        self.bindir = f"recorded-{next(_clusters)}"

    async def arun(self, query):
        if query == queries.nodes():
            return parse_nodes(SINFO)
        if query == queries.partitions():
            return parse_partitions(self.partitions)
        if query == queries.user_accounts("bob"):
            return parse_assoc_mgr(ASSOC_BOB)
        if query.cmd == "sacct":
            return [GpuUse(1, "research-medai", "bob", 1, self.used_s, None)]
        raise AssertionError(f"unexpected query {query}")


@pytest.fixture
def allocations(tmp_path):
    path = tmp_path / "allocations.yaml"
    path.write_text(ALLOCATIONS)
    return resources.budget_allocations(str(path))


@pytest.fixture
async def view(allocations):
    return await resources.cluster_view(RecordedSlurm(), "bob", allocations)


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request, tmp_path):
    """An empty hub database: the demo's SQLite file, or a site's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}"
    return new_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(where):
    return PresetStore(where)


# -- the store ---------------------------------------------------------------------------

def test_a_preset_is_kept_per_user_and_replaced_by_name(store):
    first = store.put("bob", "usual", USUAL)
    assert (first.name, first.options, first.last_used_at) == ("usual", USUAL, None)
    store.put("bob", "cpu only", {**USUAL, "partition": "cpu", "gpus": 0, "gpu_type": ""})
    store.put("alice", "usual", {**USUAL, "account": "startup-helios"})
    assert [p.name for p in store.of_user("bob")] == ["cpu only", "usual"]
    replaced = store.put("bob", "usual", {**USUAL, "gpus": 4})
    assert replaced.options["gpus"] == 4 and replaced.created_at == first.created_at
    assert len(store.of_user("bob")) == 2                      # replaced, not added
    assert store.get("alice", "usual").options["account"] == "startup-helios"
    assert PresetStore(store.url).get("bob", "usual").options["gpus"] == 4  # durable


def test_rename_delete_and_their_refusals(store):
    store.put("bob", "usual", USUAL)
    store.put("bob", "big", {**USUAL, "gpus": 4})
    assert store.rename("bob", "usual", "  daily ").name == "daily"
    assert [p.name for p in store.of_user("bob")] == ["big", "daily"]
    for call, status, words in [
        (lambda: store.rename("bob", "daily", "big"), 409, "has a preset 'big' already"),
        (lambda: store.rename("bob", "nope", "other"), 404, "bob has no preset 'nope'"),
        (lambda: store.rename("bob", "daily", "x" * 65), 400, "at most 64 characters"),
        (lambda: store.delete("bob", "nope"), 404, "bob has no preset 'nope'"),
        (lambda: store.get("alice", "daily"), 404, "alice has no preset 'daily'"),
    ]:
        with pytest.raises(PresetError) as e:
            call()
        assert e.value.status == status and words in e.value.message
    assert [p.name for p in store.of_user("bob")] == ["big", "daily"]  # nothing changed
    store.delete("bob", "big")
    assert [p.name for p in store.of_user("bob")] == ["daily"]


def test_at_most_50_presets(store):
    for i in range(MAX_PRESETS):
        store.put("bob", f"p{i:02}", USUAL)
    with pytest.raises(PresetError) as e:
        store.put("bob", "one more", USUAL)
    assert e.value.status == 400 and "has 50 presets, the most one may keep" in e.value.message
    assert len(store.of_user("bob")) == MAX_PRESETS and "one more" not in {
        p.name for p in store.of_user("bob")}
    store.put("bob", "p00", {**USUAL, "gpus": 1})               # replacing one still works
    store.put("alice", "mine", USUAL)                           # others are not limited by bob's


def test_last_used_is_the_latest_start(store):
    store.put("bob", "usual", USUAL)
    store.put("bob", "big", {**USUAL, "gpus": 4})
    assert store.last_used(store.of_user("bob")) is None
    assert store.mark_used("bob", "big") and store.mark_used("bob", "usual")
    assert store.last_used(store.of_user("bob")).name == "usual"
    assert store.mark_used("bob", "big")
    assert store.last_used(store.of_user("bob")).name == "big"
    assert not store.mark_used("bob", "deleted meanwhile")


def test_the_table_sits_in_the_hubs_own_database_beside_its_tables(tmp_path):
    import sqlite3

    hub_db = tmp_path / "jupyterhub.sqlite"
    with sqlite3.connect(hub_db) as conn:  # a table of the hub's own, as JupyterHub made it
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users (name) VALUES ('bob')")
    PresetStore(f"sqlite:///{hub_db}").put("bob", "usual", USUAL)
    with sqlite3.connect(hub_db) as conn:
        assert conn.execute("SELECT name FROM users").fetchall() == [("bob",)]
        row = conn.execute("SELECT user_name, name, options FROM workbench_presets").fetchone()
    assert row[:2] == ("bob", "usual") and json.loads(row[2]) == USUAL


# -- what is accepted ----------------------------------------------------------------------

@pytest.mark.parametrize("name,words", [
    ("", "needs a name"),
    ("   ", "needs a name"),
    ("x" * (MAX_NAME + 1), "at most 64 characters; this one has 65"),
    ("my\tusual", "cannot contain control characters"),
    ("line\nbreak", "cannot contain control characters"),
    ("bell\x07", "cannot contain control characters"),
    ("a/b", "cannot contain '/'"),
    (42, "must be a string"),
])
def test_bad_names_are_refused(name, words):
    with pytest.raises(PresetError) as e:
        check_name(name)
    assert e.value.status == 400 and words in e.value.message


def test_good_names():
    assert check_name("x" * MAX_NAME) == "x" * MAX_NAME
    assert check_name(" my usual: 2 h100, 4 h ") == "my usual: 2 h100, 4 h"
    assert check_name("Übung 1 — MedAI") == "Übung 1 — MedAI"


async def test_options_take_the_request_checks_own_verdict(view):
    assert check_options(USUAL, view) == USUAL                   # stored as the form shows
    assert check_options({"partition": "cpu"}, view) == {
        "partition": "cpu", "account": "research-climate", "gpus": 0, "gpu_type": "",
        "cpus": 2, "memory": "8G", "runtime": "01:00:00"}      # every field filled in
    for bad in [{**USUAL, "colour": "blue"}, {**USUAL, "preset": "usual"},
                {**USUAL, "gpus": 5}, {**USUAL, "account": "startup-helios"},
                {**USUAL, "memory": "lots"}, {**USUAL, "runtime": "13:00:00"}]:
        with pytest.raises(PresetError) as e:
            check_options(bad, view)
        with pytest.raises(InvalidRequest) as same:
            validate_request(bad, view)
        assert e.value.status == 400
        assert e.value.message == f"Invalid {same.value.field}: {same.value.message}"
    with pytest.raises(PresetError) as e:
        check_options({**USUAL, "colour": "blue"}, view)
    assert "Invalid colour: unknown field; the fields are: partition, account" in e.value.message
    with pytest.raises(PresetError) as e:
        check_options(["gpu", 2], view)
    assert "must be an object of the form's fields" in e.value.message


# -- does it still fit? --------------------------------------------------------------------

async def test_a_saved_preset_that_fits(view):
    assert why_not(USUAL, view) is None
    assert why_not({**USUAL, "partition": "cpu", "account": "research-climate", "gpus": 0,
                    "gpu_type": "", "memory": "8G"}, view) is None  # expired, but no GPUs


async def test_a_partition_gone(allocations, view):
    preset = check_options({**USUAL, "partition": "gpu-a100", "gpu_type": "a100"}, view)
    without = "\n".join(line for line in PARTITIONS.splitlines()
                        if "PartitionName=gpu-a100 " not in line)
    later = await resources.cluster_view(RecordedSlurm(without), "bob", allocations)
    assert why_not(preset, later) == ("partition gpu-a100 is no longer offered on this "
                                      "cluster (offered: gpu, cpu); choose another")


async def test_a_project_no_longer_his_or_expired(view):
    assert why_not({**USUAL, "account": "startup-helios"}, view) == (
        "project startup-helios is no longer one of yours (yours: research-climate, "
        "research-medai); choose another project")
    assert why_not({**USUAL, "account": "research-climate"}, view) == (
        "project research-climate's allocation ended on 2025-06-30, so it has no GPU-hours; "
        "choose another project, or 0 GPUs")


async def test_more_gpus_than_a_node_has_or_over_budget(allocations, view):
    assert why_not({**USUAL, "gpus": 8}, view) == (
        "Invalid gpus: 8 is out of range; partition gpu has at most 4 GPUs per node")
    spent = await resources.cluster_view(RecordedSlurm(used_hours=9), "bob", allocations)
    why = why_not(USUAL, spent)  # 2 GPUs x 2 h = 4 GPU-hours, 1 left
    assert why.startswith("Invalid account: your request costs 4.00 GPU-hours")
    assert "research-medai has 1.00 GPU-hours left" in why


async def test_the_listing_says_which_fit_and_which_was_last_used(store, view):
    store.put("bob", "usual", USUAL)
    store.put("bob", "huge", {**USUAL, "gpus": 8})                # saved when nodes had 8
    store.mark_used("bob", "usual")
    items = {p["name"]: p for p in hub_presets.listing(store, "bob", view)}
    assert items["usual"]["fits"] and items["usual"]["why"] is None
    assert items["usual"]["last_used"] and not items["huge"]["last_used"]
    assert not items["huge"]["fits"] and "at most 4 GPUs per node" in items["huge"]["why"]


# -- the form and the start ----------------------------------------------------------------

class Spawner(ClusterOptionsMixin):
    """The spawner's side the form needs: its user (with the hub's settings), Slurm, audit."""

    _log_name = "bob"
    orm_spawner = None
    last_end = None

    def __init__(self, db_url, allocations_file, slurm=None, **kwargs):
        super().__init__(allocations_file=allocations_file, **kwargs)
        self.slurm = slurm or RecordedSlurm()
        self.user = SimpleNamespace(name="bob", settings={"app": SimpleNamespace(db_url=db_url)})
        self.refused = []
        self.audit = SimpleNamespace(record=lambda *a, **kw: self.refused.append(kw))


@pytest.fixture
def spawner(where, tmp_path):
    path = tmp_path / "allocations.yaml"
    path.write_text(ALLOCATIONS)
    return Spawner(where, str(path))


def form_data(html: str) -> dict:
    return json.loads(re.search(r'id="wb-data">(.*?)</script>', html, re.S).group(1))


async def test_the_form_lists_the_presets_with_the_last_used_marked(spawner):
    store = hub_presets.store_of(spawner.user.settings)
    store.put("bob", "usual", USUAL)
    store.put("bob", "huge", {**USUAL, "gpus": 8})
    store.mark_used("bob", "huge")
    html = await spawner.render_options_form()
    data = form_data(html)
    assert data["user"] == "bob"
    listed = {p["name"]: p for p in data["presets"]}
    assert set(listed) == {"usual", "huge"}
    assert listed["huge"]["last_used"] and not listed["huge"]["fits"]
    assert "at most 4 GPUs per node" in listed["huge"]["why"]
    assert 'id="wb-preset-save"' in html and '<input type="hidden" name="preset"' in html


async def test_a_start_from_a_preset_marks_it_used_once_its_options_pass(spawner):
    store = hub_presets.store_of(spawner.user.settings)
    store.put("bob", "usual", USUAL)
    store.put("bob", "big", {**USUAL, "gpus": 4})
    store.mark_used("bob", "big")
    form = {k: [str(v)] for k, v in USUAL.items()}
    options = options_from_form({**form, "preset": ["usual"]}, spawner=spawner)
    assert options == USUAL and spawner.preset == "usual"      # stripped before the check
    await spawner.validate_options(options)
    assert spawner.request.gpus == 2
    assert store.last_used(store.of_user("bob")).name == "usual"

    # a refused start does not count, and the next start (REST API, no form) is no preset's
    options = options_from_form({**form, "gpus": ["8"], "preset": ["big"]}, spawner=spawner)
    with pytest.raises(SpawnException):
        await spawner.validate_options(options)
    assert store.last_used(store.of_user("bob")).name == "usual" and spawner.refused
    assert spawner.preset is None
    await spawner.validate_options(USUAL)                      # would mark "big" if it stuck
    assert store.last_used(store.of_user("bob")).name == "usual"


def test_the_api_route_and_its_registration():
    route = re.compile(hub_presets.ROUTE)
    m = route.fullmatch("/api/workbench/presets/bob/my usual")
    assert m and m.group("user_name", "preset_name") == ("bob", "my usual")
    assert route.fullmatch("/api/workbench/presets/bob").group("preset_name") == ""
    assert route.fullmatch("/api/workbench/presets/bob/a/b") is None
    assert hub_presets.handlers() == [(hub_presets.ROUTE, hub_presets.PresetsHandler)]
