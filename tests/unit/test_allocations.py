"""The allocations file: checks with line numbers, grants in and out of their period, budgets."""

import datetime as dt

import pytest

from workbench.allocations import AllocationError, Allocations, budgets_from_usage
from workbench.paths import data_file
from workbench.resources import InvalidRequest, validate_request
from workbench.slurm.models import GpuUse, Node

from .test_resources import GOOD, view

NODES = [Node(f"h100-{i}", "127.0.0.1", "idle", (), ("gpu",), 16, 16, 65536, 0, "h100", 4)
         for i in (1, 2)]


def write(tmp_path, text):
    path = tmp_path / "allocations.yaml"
    path.write_text(text)
    return path


def test_the_demo_file_loads():
    allocs = Allocations.load(data_file("cluster", "allocations.yaml"), check_users=False,
                              nodes=NODES)
    assert allocs.projects_of("bob") == ["research-medai", "research-climate"]
    startups = next(p for p in allocs.programmes if p.name == "startups")
    assert (startups.reserved.gpu_type, startups.reserved.count) == ("h100", 2)


@pytest.mark.parametrize("text,line,message", [
    ("programmes:\n  research:\n    projects:\n      p1:\n        gpu_hours: -1\n",
     5, "gpu_hours must be a number >= 0"),
    ("programmes:\n  research:\n    projects:\n      p1: {}\n  industry:\n    projects:\n"
     "      p1: {}\n", 7, "is used twice"),
    ("programmes:\n  Research:\n    projects: {}\n", 2, "must be lower-case"),
    ("programmes:\n  research:\n    projects:\n      p1:\n        budget: 3\n",
     5, "unknown key 'budget'"),
    ("programmes:\n  research:\n    projects:\n      p1:\n        valid_from: 2026-02-01\n"
     "        valid_until: 2026-01-01\n", 6, "before valid_from"),
    ("programmes:\n  startups:\n    reserved_gpus: {gpu_type: h100, count: 8}\n",
     3, "leave some for the others"),
    ("programmes:\n  research:\n    projects:\n      p1:\n        members: [nosuchuser9]\n",
     5, "no user of this machine"),
])
def test_errors_name_the_line(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(AllocationError) as e:
        Allocations.load(path, nodes=NODES)
    assert str(e.value).startswith(f"{path}:{line}: "), str(e.value)
    assert message in str(e.value)


def test_grant_outside_its_period_is_zero():
    allocs = Allocations.load(data_file("cluster", "allocations.yaml"), check_users=False)
    helios = allocs.project("startup-helios")
    assert helios.granted_minutes(dt.date(2026, 6, 1)) == 500 * 60
    assert helios.granted_minutes(dt.date(2028, 1, 1)) == 0


def test_budgets_count_gpu_seconds_inside_the_period():
    allocs = Allocations.load(data_file("cluster", "allocations.yaml"), check_users=False)
    t = dt.datetime(2026, 6, 1, 12)
    usage = [GpuUse(1, "startup-helios", "alice", 2, 3600, t),          # 2 GPU-h
             GpuUse(2, "startup-helios", "alice", 4, 1800, dt.datetime(2025, 6, 1)),  # before
             GpuUse(3, "research-medai", "bob", 1, 7200, t)]            # 2 GPU-h
    b = {x.project: x for x in budgets_from_usage(allocs, usage, dt.date(2026, 6, 2))}
    assert b["startup-helios"].used_hours == pytest.approx(2.0)
    assert b["startup-helios"].remaining_hours == pytest.approx(498.0)
    assert b["research-medai"].used_hours == pytest.approx(2.0)
    expired = budgets_from_usage(allocs, usage, dt.date(2028, 1, 1))
    assert next(x for x in expired if x.project == "startup-helios").remaining_hours == 0


def test_a_request_over_the_budget_says_what_is_left_and_what_fits():
    allocs = Allocations.load(data_file("cluster", "allocations.yaml"), check_users=False)
    usage = [GpuUse(1, "startup-helios", "alice", 4, int(499 * 3600 / 4), dt.datetime(2026, 6, 1))]
    budgets = budgets_from_usage(allocs, usage, dt.date(2026, 6, 2))
    v = view()
    v = type(v)(v.partitions, v.accounts, {b.project: b for b in budgets
                                           if b.project in v.accounts})
    with pytest.raises(InvalidRequest) as e:
        validate_request(GOOD, v)  # 2 GPUs x 2 h = 4 GPU-h, 1 left
    assert e.value.field == "account"
    assert "1.00 GPU-hours left" in e.value.message
    assert "2 GPUs for at most 00:30:00" in e.value.message
    ok = validate_request({**GOOD, "runtime": "00:30:00"}, v)
    assert ok.gpu_hours == 1.0
    assert validate_request({**GOOD, "gpus": 0}, v).gpus == 0  # CPU-only costs nothing
