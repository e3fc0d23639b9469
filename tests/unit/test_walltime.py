"""Walltime left and extensions, decided before anything reaches scontrol."""

from datetime import UTC, datetime, timedelta

import pytest

from workbench.allocations import ProjectBudget
from workbench.resources import InvalidRequest
from workbench.slurm.models import Job, JobState, Partition
from workbench.walltime import plan_extension, walltime

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
GPU = Partition("gpu", ("h100-1",), 720, 60)


def running(limit=60, gpus=2, started=NOW - timedelta(minutes=50)):
    return Job(9, "jupyter-alice", "alice", "startup-helios", "gpu", JobState.RUNNING,
               gpus=gpus, time_limit_min=limit, start_time=started)


def budget(left_hours):
    return ProjectBudget("startup-helios", "startups", ("alice",), 500, 500 - left_hours,
                         None, None, True)


def test_time_left_of_a_running_job():
    w = walltime(running(), GPU, NOW)
    assert w.remaining_s == 600 and w.as_dict()["can_extend_min"] == 660
    pending = Job(1, "j", "alice", "a", "gpu", JobState.PENDING, time_limit_min=60)
    assert walltime(pending, GPU, NOW) is None


def test_extension_within_limits():
    job = running()
    assert plan_extension(job, walltime(job, GPU, NOW), 60, budget(100)) == 120


@pytest.mark.parametrize("minutes,left,message", [
    (661, 100, "at most 660 more minutes"),
    (60, 1.5, "has 1.50 left (enough for 45 more minutes)"),
    (0, 100, "whole number of minutes"),
    ("60", 100, "whole number of minutes"),
])
def test_refusals_say_what_is_possible(minutes, left, message):
    job = running()
    with pytest.raises(InvalidRequest) as e:
        plan_extension(job, walltime(job, GPU, NOW), minutes, budget(left))
    assert message in e.value.message
