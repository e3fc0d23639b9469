"""The hub's own workbench APIs (``/hub/api/workbench/...``, ``/hub/api/batchspawner``):
their OpenAPI document against the routes the hub's configuration registers, and hypothesis
on what their handlers decide with.

The handlers need a running JupyterHub (its database, users, scopes and spawners), so they
are not fuzzed over HTTP here; the functions every request goes through are, with arbitrary
input: the presets' name and options checks and their store (a refusal changes nothing),
the walltime extension's plan. ``tests/fuzzing.py`` says how many cases.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from tornado.web import RequestHandler
from traitlets.config import Config

from extensions.catalogue.openapi import DOCUMENT as CATALOGUE_DOCUMENT
from extensions.help.openapi import DOCUMENT as HELP_DOCUMENT
from spawners import api
from spawners.openapi import DOCUMENT, SPAWN_OPTIONS
from tests.fuzzing import fuzz_settings
from workbench import hubconfig
from workbench.paths import FactoryHome
from workbench.presets import MAX_NAME, PresetError, PresetStore, check_name
from workbench.resources import FIELDS, InvalidRequest
from workbench.slurm.models import Job, JobState
from workbench.slurm.parse import format_duration, parse_duration_min
from workbench.walltime import Walltime, plan_extension

#: the names of the routes' groups in the document
PARAMS = {"user_name": "user", "preset_name": "name", "server_name": "server"}
METHODS = ("get", "post", "put", "patch", "delete")


def hub_routes(tmp_path) -> list[tuple[str, type]]:
    """Every route the workbench adds to the hub: its extra handlers, and the port callback
    it puts among the hub's own API handlers."""
    from jupyterhub import apihandlers
    c = Config()
    hubconfig.update_spawner(c, hubconfig.Site(home=FactoryHome(tmp_path)))
    ours = [(path, handler) for path, handler, *_ in apihandlers.default_handlers
            if handler.__module__.startswith("spawners.")]
    assert ours == [(api.ROUTE, api.PortCallbackHandler)]
    return [(path, handler) for path, handler, *_ in c.JupyterHub.extra_handlers] + ours


def variants(pattern: str) -> list[str]:
    """The path templates a route's pattern serves: an optional last part ``/?(?P<x>[^/]*)``
    both left out and given."""
    def named(text: str) -> str:
        return re.sub(r"\(\?P<(\w+)>\[\^/\]\+\)", lambda m: "{" + PARAMS[m.group(1)] + "}",
                      text).replace("\\", "")
    optional = re.fullmatch(r"(.*)/\?\(\?P<(\w+)>\[\^/\]\*\)", pattern)
    if optional:
        base = named(optional.group(1))
        return [base, f"{base}/{{{PARAMS[optional.group(2)]}}}"]
    return [named(pattern)]


def methods(handler: type) -> set[str]:
    return {m for m in METHODS if getattr(handler, m) is not getattr(RequestHandler, m)}


def test_every_route_of_the_hub_side_is_in_its_openapi_document(tmp_path):
    documented = {path: set(ops) for path, ops in DOCUMENT["paths"].items()}
    served: dict[str, set[str]] = {}
    for pattern, handler in hub_routes(tmp_path):
        paths = variants(pattern)
        assert all(p in documented for p in paths), (pattern, paths)
        # every method the handler answers is documented on one of its paths ...
        assert methods(handler) <= set().union(*(documented[p] for p in paths)), pattern
        for p in paths:
            served[p] = methods(handler)
    # ... and nothing is documented that no handler answers
    assert set(documented) == set(served)
    for path, ops in documented.items():
        assert ops <= served[path], path
    assert "/api/workbench/openapi.json" in served
    assert DOCUMENT["servers"] == [{"url": "/hub"}]
    assert set(SPAWN_OPTIONS["properties"]) == set(FIELDS)


def test_the_documents_are_valid_openapi_3_with_every_operation_loadable():
    for document in (DOCUMENT, HELP_DOCUMENT, CATALOGUE_DOCUMENT):
        schema = schemathesis.openapi.from_dict(document)
        operations = list(schema.get_all_operations())
        assert operations and all(op.ok() for op in operations), document["info"]["title"]
        assert document["openapi"].startswith("3.")


# -- presets: names, options and the store -----------------------------------------------


@given(st.one_of(st.text(max_size=MAX_NAME + 10), st.none(), st.integers(), st.booleans(),
                 st.lists(st.text(max_size=3), max_size=2)))
@fuzz_settings(0.5)
def test_fuzz_preset_names_are_checked_or_refused_with_a_400(name):
    try:
        checked = check_name(name)
    except PresetError as e:
        assert e.status == 400 and "name" in e.message
        return
    assert checked == name.strip() and 0 < len(checked) <= MAX_NAME and "/" not in checked
    assert check_name(checked) == checked  # a checked name stays valid


OPTIONS = {"partition": "gpu", "account": "research-medai", "gpus": 1, "gpu_type": "h100",
           "cpus": 2, "memory": "8G", "runtime": "01:00:00"}


@given(ops=st.lists(st.tuples(st.sampled_from(["put", "rename", "delete"]),
                              st.sampled_from(["a", "b", " a ", "c/d", "", "x" * 70, "\t"]),
                              st.sampled_from(["a", "b", "c", "", "e/f", "y" * 70])),
                    max_size=8))
@fuzz_settings(0.3)
def test_fuzz_a_refused_preset_change_changes_nothing(tmp_path_factory, ops):
    store = PresetStore(f"sqlite:///{tmp_path_factory.mktemp('presets')}/hub.sqlite")
    for op, name, other in ops:
        before = store.of_user("bob")
        try:
            if op == "put":
                store.put("bob", check_name(name), OPTIONS)
            elif op == "rename":
                store.rename("bob", name, other)
            else:
                store.delete("bob", name)
        except PresetError as e:
            assert e.status in (400, 404, 409) and e.message
            assert store.of_user("bob") == before, (op, name, other)
    assert len({p.name for p in store.of_user("bob")}) == len(store.of_user("bob"))


# -- walltime: the extension's plan ---------------------------------------------------------

#: the longest time limit Slurm takes, in minutes (its time fields are 32 bits; two values
#: at the top mean "infinite" and "not set")
SLURM_MAX_MIN = 2**32 - 3


def running_job(limit_min: int, gpus: int) -> Job:
    return Job(job_id=42, name="jupyterhub", user="bob", account="research-medai",
               partition="gpu", state=JobState.RUNNING, gpus=gpus, time_limit_min=limit_min,
               start_time=datetime.now(UTC) - timedelta(minutes=5))


class Left:
    def __init__(self, hours: float):
        self.granted_hours, self.used_hours, self.remaining_hours = hours, 0.0, hours


@given(minutes=st.one_of(st.integers(-10, 10**18), st.floats(), st.text(max_size=5),
                         st.none(), st.booleans(), st.lists(st.integers(), max_size=2)),
       limit=st.integers(1, 60 * 24 * 30), most=st.none() | st.integers(1, 60 * 24 * 60),
       gpus=st.integers(0, 8), left=st.none() | st.floats(0, 10**6))
@fuzz_settings(0.5)
def test_fuzz_a_walltime_extension_is_a_time_slurm_takes_or_refused_naming_minutes(
        minutes, limit, most, gpus, left):
    job = running_job(limit, gpus)
    wall = Walltime(42, limit, datetime.now(UTC), 60, most)
    budget = None if left is None else Left(left)
    try:
        new_limit = plan_extension(job, wall, minutes, budget)
    except InvalidRequest as e:
        assert e.field == "minutes" and e.message
        return
    assert new_limit == limit + minutes and minutes >= 1
    assert most is None or new_limit <= most
    assert new_limit <= SLURM_MAX_MIN
    assert parse_duration_min(format_duration(new_limit)) == new_limit


def test_an_extension_past_what_slurm_takes_is_refused_on_a_partition_without_maxtime():
    """Found (3,000 cases): ``{"minutes": 4294967293}`` on a 1-minute job of a partition
    without MaxTime was planned as a time limit of 4294967294 minutes, which Slurm reads as
    "not set" (``scontrol`` refused: the API's answer was a 503)."""
    wall = Walltime(42, 1, datetime.now(UTC), 60, None)
    for minutes in (4294967293, 10**18 - 1):
        try:
            plan_extension(running_job(1, 0), wall, minutes, None)
        except InvalidRequest as e:
            assert e.field == "minutes" and "at most" in e.message
        else:
            raise AssertionError(f"{minutes} more minutes were planned")
    assert plan_extension(running_job(1, 0), wall, SLURM_MAX_MIN - 1, None) == SLURM_MAX_MIN
