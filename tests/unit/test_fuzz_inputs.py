"""hypothesis on what users and operators write: the spawn options (the one request check,
:func:`workbench.resources.validate_request`), the scaler's worker groups, the allocations
file and the catalogue file. Arbitrary input never raises anything but the project's own
error, which names the field (or ``file:line``); what passes the check passes it again as it
comes out (a round trip). ``tests/fuzzing.py`` says how many cases.
"""

from __future__ import annotations

import datetime as dt
import re
import string

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import fuzz_settings
from workbench.allocations import loader as allocations
from workbench.catalogue import model as catalogue
from workbench.resources import (
    FIELDS,
    MAX_TIME_MIN,
    ClusterView,
    InvalidRequest,
    PartitionOffer,
    validate_request,
)
from workbench.scaling.pools import ScalingError, WorkerPool, check_pool
from workbench.slurm.models import Node


class Left:
    """What a project has left of its GPU-hours."""

    def __init__(self, hours: float):
        self.granted_hours, self.used_hours, self.remaining_hours = hours, 0.0, hours


VIEW = ClusterView(
    {"gpu": PartitionOffer("gpu", True, 2880, 60, ("h100",), 4, 32, 256 * 1024, 2, 3),
     "gpu-a100": PartitionOffer("gpu-a100", False, 1440, 60, ("a100",), 4, 32, 128 * 1024, 1,
                                4, allow_accounts=("research-medai",)),
     "cpu": PartitionOffer("cpu", False, None, None, (), 0, 16, 64 * 1024, 1, 0)},
    ("research-medai", "research-climate"), {"research-medai": Left(100.0)})

#: anything JSON can carry, and then some (a Python caller passes any object)
JUNK = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
                    | st.binary(max_size=4),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
#: values near what each field takes
NEAR = {
    "partition": st.sampled_from(["gpu", "gpu-a100", "cpu", "", "GPU", "gpu ", "nope"]),
    "account": st.sampled_from(["research-medai", "research-climate", "startup-helios", ""]),
    "gpus": st.integers(-2, 6) | st.integers(), "cpus": st.integers(-1, 40) | st.integers(),
    "gpu_type": st.sampled_from(["h100", "a100", "", "H100", "v100"]),
    "memory": st.from_regex(r"\A[0-9]{1,12}[KMGTkmgtx]?\Z") | st.integers(),
    "runtime": st.from_regex(r"\A([0-9]{1,3}-)?[0-9]{1,3}:[0-9]{2}:[0-9]{2}\Z")
    | st.from_regex(r"\A[0-9]{1,20}\Z") | st.integers(),
}
OPTIONS = st.fixed_dictionaries({}, optional={k: NEAR[k] | JUNK for k in FIELDS}) | \
    st.dictionaries(st.text(max_size=8) | st.integers(), JUNK, max_size=3) | JUNK


def check(options) -> object:
    try:
        return validate_request(options, VIEW)
    except InvalidRequest as e:
        assert e.message and e.field and e.field.isprintable() and len(e.field) < 200, e
        assert e.field in FIELDS or e.field == "user_options" or "unknown field" in e.message
        return e


@given(OPTIONS)
@fuzz_settings()
def test_fuzz_the_spawn_options_check_names_the_field_or_round_trips(options):
    request = check(options)
    if isinstance(request, InvalidRequest):
        return
    offer = VIEW.partitions[request.partition]
    assert request.account in VIEW.accounts and 0 <= request.gpus <= offer.gpus_per_node
    assert 1 <= request.runtime_min <= (offer.max_time_min or MAX_TIME_MIN)
    assert 1 <= request.runtime_min <= MAX_TIME_MIN
    assert validate_request(request.as_options(), VIEW) == request  # it round-trips


def test_a_runtime_beyond_what_slurm_takes_is_refused_on_a_partition_without_maxtime():
    """Found: ``{"partition": "cpu", "runtime": 10**18}`` (18 digits, or the int) passed the
    check on a partition without MaxTime, and ``sbatch --time`` got a limit Slurm cannot
    hold."""
    for runtime in (10**18, "999999999999999999", MAX_TIME_MIN + 1):
        with pytest.raises(InvalidRequest) as e:
            validate_request({"partition": "cpu", "gpus": 0, "runtime": runtime}, VIEW)
        assert e.value.field == "runtime"
    assert validate_request({"partition": "cpu", "gpus": 0, "runtime": MAX_TIME_MIN},
                            VIEW).runtime_min == MAX_TIME_MIN


# -- the scaler's worker groups (workbench/scaling/pools.py) ----------------------------------


@given(name=st.sampled_from(["cpu", "gpu", "g1", "", "CPU", "a" * 17]) | JUNK,
       fields=st.fixed_dictionaries({}, optional={
           k: NEAR[k] | JUNK for k in ("partition", "gpus", "gpu_type", "cpus", "memory",
                                       "runtime")}),
       account=NEAR["account"], count=st.integers(-2, 100) | JUNK)
@fuzz_settings()
def test_fuzz_a_worker_group_is_checked_or_refused_naming_the_field(name, fields, account,
                                                                    count):
    pool = WorkerPool(name=name, **{"partition": "gpu", **fields})
    try:
        planned = check_pool(pool, account, VIEW, count)
    except ScalingError as e:
        assert e.field and e.message and str(e).startswith(f"Invalid {e.field}")
        return
    again = check_pool(WorkerPool(name, planned.request.partition, planned.request.gpus,
                                  planned.request.gpu_type, planned.request.cpus,
                                  planned.request.memory, planned.request.time),
                       account, VIEW, count)
    assert again.request == planned.request


@pytest.mark.parametrize("spec, field", [({"partition": "gpu"}, "name"),
                                         ({1: "x", "b": "y"}, "1"), (["gpu"], "pools")])
def test_a_worker_group_spec_without_a_name_or_with_a_number_as_key_is_a_scaling_error(
        spec, field):
    """Found beside the fuzzing: a TypeError escaped (keys of mixed types sorted, the
    dataclass called without its required fields)."""
    with pytest.raises(ScalingError) as e:
        WorkerPool.from_dict(spec)
    assert e.value.field == field


# -- the allocations file and the catalogue file ---------------------------------------------

NAMES = st.sampled_from(["startups", "research", "p-1", "Bad Name", "root", "guard-x", "", 1,
                         "x" * 70, "alice"])
SCALAR = st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats() | \
    st.text(string.printable, max_size=8) | st.dates(dt.date(2020, 1, 1), dt.date(2030, 1, 1)) \
    | st.sampled_from(["30%", "110%", "0%", "current-year", ".nan", "h100", "2026-01-01"])
VALUE = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(NAMES | st.text(max_size=5), inner, max_size=3),
                     max_leaves=8)
PROJECT = st.fixed_dictionaries({}, optional={
    "members": st.lists(st.sampled_from(["alice", "bob", "nobody"]), max_size=2) | VALUE,
    "gpu_hours": st.integers(-1, 10**5) | st.floats() | VALUE,
    "valid_from": st.dates() | VALUE, "valid_until": st.dates() | VALUE,
    "description": VALUE, "extra": VALUE})
PROGRAMME = st.fixed_dictionaries({}, optional={
    "share": st.sampled_from(["30%", "40%", "101%", "x"]) | st.dictionaries(
        st.sampled_from(["h100", "a100", "v100"]), st.sampled_from(["30%", 500]) | SCALAR,
        max_size=2) | VALUE,
    "reserved_gpus": st.dictionaries(st.sampled_from(["h100", "a100"]), st.integers(-1, 9) |
                                     SCALAR, max_size=2) | st.fixed_dictionaries(
        {"gpu_type": st.sampled_from(["h100", "a100"]) | SCALAR,
         "count": st.integers(-1, 9) | SCALAR}) | VALUE,
    "projects": st.dictionaries(NAMES, PROJECT | VALUE, max_size=3) | VALUE,
    "description": VALUE})
ALLOCATIONS = st.fixed_dictionaries({"programmes": st.dictionaries(NAMES, PROGRAMME | VALUE,
                                                                   max_size=3) | VALUE},
                                    optional={"period": st.sampled_from(["current-year"]) |
                                              st.fixed_dictionaries(
                                                  {"start": st.dates(), "end": st.dates()}) |
                                              VALUE, "other": VALUE})
#: a few lines a person could get wrong in YAML itself
YAML_TEXT = st.sampled_from(["", "programmes:\n  ? [a, b]\n  : 1\n", "programmes: [\n",
                             "a: 1\na: 2\n", "programmes: {x: &a [*a]}\n", "\t- x", "!!python/"
                             "object:os.system x", "programmes:\n  research: {share: .nan}\n",
                             "programmes: !!binary AAAA\n"])
NODES = [Node("h1", "h1", "IDLE", partitions=("gpu",), gpu_type="h100", gpus=4, cpus=32,
              memory_mb=256 * 1024),
         Node("h2", "h2", "IDLE", partitions=("gpu",), gpu_type="h100", gpus=4, cpus=32,
              memory_mb=256 * 1024),
         Node("a1", "a1", "IDLE", partitions=("gpu-a100",), gpu_type="a100", gpus=4, cpus=32,
              memory_mb=128 * 1024)]
FILE_LINE = r"{path}:(\d+|\?)?:? "


def as_yaml(data) -> str:
    return yaml.safe_dump(data, default_flow_style=False, allow_unicode=True)


@given(st.one_of(ALLOCATIONS.map(as_yaml), YAML_TEXT), st.booleans())
@fuzz_settings()
def test_fuzz_the_allocations_file_loads_or_names_file_and_line(tmp_path_factory, text,
                                                                  with_nodes):
    path = tmp_path_factory.mktemp("alloc") / "allocations.yaml"
    path.write_text(text)
    try:
        allocs = allocations.load(path, check_users=False, nodes=NODES if with_nodes else None,
                                  today=dt.date(2026, 6, 1))
    except allocations.AllocationError as e:
        assert re.match(rf"{re.escape(str(path))}:(\d+: |\s*cannot read)", str(e)), str(e)
        return
    for project in allocs.projects:
        assert 0 <= project.gpu_hours < float("inf")
    # what loaded loads again, the same
    assert allocations.load(path, check_users=False, nodes=NODES if with_nodes else None,
                            today=dt.date(2026, 6, 1)) == allocs


@pytest.mark.parametrize("text,words", [
    ("programmes:\n  p:\n    projects:\n      q: {gpu_hours: .nan}\n", "gpu_hours must be"),
    ("programmes:\n  p:\n    projects:\n      q: {gpu_hours: .inf}\n", "gpu_hours must be"),
    ("period: current-year\nprogrammes:\n  p: {share: {h100: .inf}}\n", "share of h100 must"),
])
def test_allocations_found_by_fuzzing_are_refused_with_file_and_line(tmp_path, text, words):
    """Found: gpu_hours and a share of ``.nan`` or ``.inf`` (YAML floats) loaded, and would
    have reached Slurm's limits."""
    path = tmp_path / "allocations.yaml"
    path.write_text(text)
    with pytest.raises(allocations.AllocationError, match=re.escape(words)) as e:
        allocations.load(path, check_users=False)
    assert re.match(rf"{re.escape(str(path))}:\d+: ", str(e.value)), str(e.value)


DATASET = st.fixed_dictionaries({}, optional={
    k: VALUE for k in ("title", "description", "data_space", "theme", "publisher", "keywords",
                       "licence", "licence_title", "access_rights", "personal_data", "source",
                       "distributions", "access", "issued", "contact", "extra")}) | VALUE
CATALOGUE = st.fixed_dictionaries(
    {"datasets": st.dictionaries(st.sampled_from(["grid-load", "x", "Bad", "a/b", 1]) |
                                 st.text(max_size=4), DATASET, max_size=3) | VALUE},
    optional={"catalogue": st.fixed_dictionaries({}, optional={
        "title": VALUE, "description": VALUE, "publisher": VALUE}) | VALUE})


@given(st.one_of(CATALOGUE.map(as_yaml), YAML_TEXT,
                 st.just(catalogue.default_path().read_text()
                         if catalogue.default_path().exists() else "datasets: {}\n")))
@fuzz_settings()
def test_fuzz_the_catalogue_file_loads_entry_by_entry_or_names_file_and_line(text):
    try:
        loaded = catalogue.load("catalogue.yaml", text=text)
    except catalogue.CatalogueError as e:
        assert re.match(r"catalogue\.yaml:(\d+: |\s*cannot read)", str(e)), str(e)
        return
    for error in loaded.errors:
        assert re.match(r"catalogue\.yaml:\d+: dataset ", str(error)), str(error)
    again = catalogue.load("catalogue.yaml", text=text)
    assert again.ids == loaded.ids and again.errors == loaded.errors


def test_a_list_as_a_key_is_a_yaml_error_with_its_line(tmp_path):
    """Found: ``? [a, b]`` (a list as a mapping's key) was a TypeError out of the YAML reader
    that both files go through (``workbench/linedyaml.py``)."""
    path = tmp_path / "allocations.yaml"
    path.write_text("programmes:\n  ? [a, b]\n  : 1\n")
    with pytest.raises(allocations.AllocationError, match="cannot read: a key must be a name "
                       "or a number, not a list\n.*line 2"):
        allocations.load(path, check_users=False)


@pytest.mark.parametrize("text,words", [
    ("datasets:\n  ? [a, b]\n  : 1\n", "cannot read"),
    ("datasets:\n  x:\n    1: a\n    foo: b\n", None),
    ("catalogue: {publisher: {url: x}}\ndatasets: {}\n", "catalogue.yaml:1: catalogue: "
                                                          "publisher must be"),
])
def test_catalogue_files_found_by_fuzzing_are_refused_not_crashed(text, words):
    """Found: a list as a key (TypeError), keys of mixed types in an entry (TypeError from
    sorting them), a publisher mapping without a name (KeyError)."""
    if words is None:  # one bad entry: reported with its line, the others load
        (error,) = catalogue.load("catalogue.yaml", text=text).errors
        assert str(error).startswith("catalogue.yaml:3: dataset x: unknown key 1")
        return
    with pytest.raises(catalogue.CatalogueError, match=re.escape(words)):
        catalogue.load("catalogue.yaml", text=text)
