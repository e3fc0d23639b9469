"""The pieces the spawn form, the scalers and walltime share: the cluster view a request is
checked against (one function for the spawner and a notebook's session), the one GPU-hour
comparison, and the torch run's node count (torch_submit and the scaler panel)."""

import asyncio
import itertools
import logging
from dataclasses import replace

import pytest

from extensions.widgets.scaler import ClusterScaler
from spawners.options import ClusterOptionsMixin
from tests.unit.test_scaling import CPU, GPU, SESSION_TAG, RecordingJob, view
from tests.unit.test_scaling_widget import RecordedSlurm
from workbench import resources
from workbench.resources import InvalidRequest, check_budget, fits_budget, validate_request
from workbench.scaling.cluster import PoolCluster
from workbench.scaling.pools import ScalingError, check_nodes, check_pool, check_total
from workbench.scaling.session import Session
from workbench.slurm import queries
from workbench.slurm.models import Association, GpuUse, Node, Partition

NODES = [Node("h100-1", "127.0.0.1", "idle", (), ("gpu",), 16, 16, 65536, 0, "h100", 4, 0),
         Node("cpu-1", "127.0.0.1", "idle", (), ("cpu",), 8, 8, 32768)]
PARTS = [Partition("gpu", (), 720, 60), Partition("cpu", (), 1440, 60, default=True)]
ASSOCS = [Association("startup-helios", "alice")]
ALLOCATIONS = """\
programmes:
  startups:
    description: Start-ups
    projects:
      startup-helios: {members: [alice], gpu_hours: 10}
      startup-other: {members: [bob], gpu_hours: 5}
"""


_clusters = itertools.count()  # each fake a cluster of its own

class FakeSlurm:
    """Answers the view's queries with typed rows and records what was asked; a cluster of
    its own (nothing shared with another test's through the process's snapshots)."""

    slurm_conf = None

    def __init__(self, used_s: int = 3600):
        self.asked: list[str] = []
        self.used_s = used_s
        self.bindir = f"fake-{next(_clusters)}"

    async def arun(self, query):
        if query == queries.nodes():
            answer = NODES
        elif query == queries.partitions():
            answer = PARTS
        elif query == queries.user_accounts("alice"):
            answer = ASSOCS
        elif query.cmd == "sacct":
            answer = [GpuUse(1, "startup-helios", "alice", 2, self.used_s, None)]
        else:
            raise AssertionError(f"unexpected query {query}")
        self.asked.append(query.cmd)
        return answer


@pytest.fixture
def allocations_file(tmp_path):
    path = tmp_path / "allocations.yaml"
    path.write_text(ALLOCATIONS)
    return str(path)


async def test_cluster_view_with_budgets_from_one_sacct(allocations_file):
    slurm = FakeSlurm()
    allocs = resources.budget_allocations(allocations_file)
    v = await resources.cluster_view(slurm, "alice", allocs)
    assert set(v.partitions) == {"gpu", "cpu"} and v.accounts == ("startup-helios",)
    assert set(v.budgets) == {"startup-helios"}             # only the user's own projects
    assert v.budgets["startup-helios"].remaining_hours == pytest.approx(8)  # 2 GPUs x 1 h
    assert sorted(slurm.asked) == ["sacct", "scontrol", "scontrol", "sinfo"]


async def test_without_allocations_no_sacct_and_no_budgets():
    slurm = FakeSlurm()
    v = await resources.cluster_view(slurm, "alice", None)
    assert v.budgets == {} and "sacct" not in slurm.asked


def test_budget_allocations_none_empty_or_unusable(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("AIFACTORY_HOME", str(tmp_path))       # no site file: the demo's
    assert resources.budget_allocations(None).projects
    assert resources.budget_allocations("") is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("programmes: [\n")
    with caplog.at_level(logging.ERROR, "workbench.resources"):
        assert resources.budget_allocations(str(bad), who="alice (scaling)") is None
    assert "alice (scaling): allocations file unusable, budgets not shown" in caplog.text


class _Options(ClusterOptionsMixin):
    _log_name = "alice"

    def __init__(self, slurm, **kwargs):
        super().__init__(**kwargs)
        self.slurm = slurm
        self.user = type("User", (), {"name": "alice"})()


async def test_the_spawn_form_and_a_session_see_the_same_view(allocations_file):
    form_view = await _Options(FakeSlurm(), allocations_file=allocations_file).cluster_view()
    session = Session("alice", 41, "cpu-1", "127.0.0.1", SESSION_TAG, "/user/alice/",
                      FakeSlurm())
    session_view = session.cluster_view(allocations_file)  # from inside a running loop, too
    assert session_view.partitions == form_view.partitions
    assert session_view.accounts == form_view.accounts
    assert session_view.budgets == form_view.budgets and form_view.budgets
    assert await _Options(FakeSlurm(), allocations_file=allocations_file).budgets()


async def test_starts_at_the_same_moment_share_one_sinfo_and_one_scontrol():
    slurm = FakeSlurm()
    views = await asyncio.gather(*(_Options(slurm).cluster_view() for _ in range(40)))
    assert all(v.partitions == views[0].partitions for v in views)
    # one sinfo, one scontrol show partition; each user's accounts are their own
    assert slurm.asked.count("sinfo") == 1 and slurm.asked.count("scontrol") == 1 + 40
    alone = FakeSlurm()
    await asyncio.gather(*(_Options(alone, cluster_view_age=None).cluster_view()
                           for _ in range(3)))
    assert alone.asked.count("sinfo") == 3


# -- the one GPU-hour comparison ---------------------------------------------------------------

class Left:
    granted_hours = 10.0

    def __init__(self, left):
        self.used_hours = 10.0 - left
        self.remaining_hours = left


def test_fits_budget_allows_float_rounding_only():
    assert fits_budget(1e6, None)
    assert fits_budget(4.0, Left(4.0))
    assert fits_budget(0.1 + 0.2, Left(0.3))                # 0.30000000000000004
    assert not fits_budget(4.01, Left(4.0))
    assert not fits_budget(0.01, Left(0.0))


def test_every_budget_check_takes_the_same_boundary():
    """A request, a group of workers and a walltime extension that cost exactly what is left
    pass; a little more is refused, by each caller with its own words."""
    from datetime import UTC, datetime

    from workbench.slurm.models import Job, JobState
    from workbench.walltime import plan_extension, walltime

    v = view(left=4)                                        # startup-helios: 4 GPU-hours
    budget = v.budgets["startup-helios"]
    request = validate_request({"partition": "gpu", "account": "startup-helios", "gpus": 2,
                                "runtime": "02:00:00"}, v)
    check_budget(request, budget)                           # 4 GPU-hours: fits
    with pytest.raises(InvalidRequest, match="has 4.00 GPU-hours left"):
        check_budget(replace(request, runtime_min=121), budget)
    group = check_pool(GPU, "startup-helios", v)            # 1 GPU x 2 h
    assert check_total([(group, 2)], "startup-helios", v) == 4
    with pytest.raises(ScalingError, match="all worker groups together cost 6.00"):
        check_total([(group, 3)], "startup-helios", v)
    start = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    job = Job(7, "lab", "alice", "startup-helios", "gpu", JobState.RUNNING, start_time=start,
              time_limit_min=60, gpus=2)
    wall = walltime(job, PARTS[0], start)
    assert plan_extension(job, wall, 120, budget) == 180    # 2 GPUs x 2 h = 4
    with pytest.raises(InvalidRequest, match="project startup-helios has 4.00 left"):
        plan_extension(job, wall, 121, budget)


# -- the torch run's node count ---------------------------------------------------------------

def test_check_nodes_at_most_the_partitions_nodes():
    v = view()
    request = check_pool(GPU, "startup-helios", v).request   # partition gpu: 2 nodes
    assert check_nodes(2, request, v) == 2
    with pytest.raises(ScalingError) as e:
        check_nodes(3, request, v)
    assert e.value.field == "nodes" and "ask for at most 2" in e.value.message
    with pytest.raises(ScalingError) as e:
        check_nodes(3, request, v, "count", "gpu")
    assert (e.value.field, e.value.pool) == ("count", "gpu")


def test_torch_submit_and_the_panel_refuse_the_same_node_count(tmp_path, monkeypatch):
    from tests.unit.test_scaling import RecordedSession
    from workbench.scaling.torchrun import torch_submit

    monkeypatch.setenv("HOME", str(tmp_path))
    session = RecordedSession("alice", 41, "cpu-1", "127.0.0.1", SESSION_TAG, "/user/alice/",
                              RecordedSlurm())
    with pytest.raises(ScalingError) as direct:
        torch_submit(print, nodes=3, gpus_per_node=1, partition="gpu", session=session)
    cluster = PoolCluster([GPU, CPU], "startup-helios", session=session, security=None,
                          job_cls=RecordingJob)
    scaler = ClusterScaler(cluster=cluster, refresh_s=3600)
    try:
        scaler.engine = "torch"
        scaler.pool_rows[0].count.value = 3
        scaler.update_cost()
        assert direct.value.message in scaler.cost_line.value
        assert direct.value.field == "nodes"
    finally:
        scaler.close()
        cluster.close()
