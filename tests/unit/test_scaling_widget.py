"""ClusterScaler without a kernel: set values, click, assert on traits (STYLE.md "Widgets").

The panel sits over a PoolCluster whose job class records instead of submitting (see
test_scaling.py), and reads the queue from a recorded ``squeue --json``."""

import itertools
import time
from pathlib import Path

import pytest

from extensions.widgets.scaler import ClusterScaler
from tests.unit.test_scaling import (
    CANCELLED,
    CPU,
    GPU,
    SESSION_TAG,
    SUBMITTED,
    RecordedSession,
    RecordingJob,
)
from workbench.scaling.cluster import PoolCluster

SQUEUE = (Path(__file__).parent.parent / "fixtures" / "squeue-22.05.json").read_text()


_clusters = itertools.count()


class RecordedSlurm:
    """Answers ``squeue --json`` with a recording (the only query the panel runs itself) and
    counts the calls. Each is a cluster of its own (``bindir``), so no two tests share the
    kernel's job snapshot."""

    slurm_conf = None

    def __init__(self):
        self.bindir = f"recorded-{next(_clusters)}"
        self.calls = 0

    def run(self, query):
        assert query.cmd == "squeue"
        self.calls += 1
        return query.parse(SQUEUE)


@pytest.fixture
def scaler(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    SUBMITTED.clear()
    CANCELLED.clear()
    session = RecordedSession("alice", 41, "cpu-1", "127.0.0.1", SESSION_TAG, "/user/alice/",
                              RecordedSlurm())
    object.__setattr__(session, "_left", 10)
    cluster = PoolCluster([CPU, GPU], "startup-helios", session=session, security=None,
                          job_cls=RecordingJob)
    s = ClusterScaler(cluster=cluster, refresh_s=3600)
    yield s
    s.close()
    cluster.close()


def rows(s):
    return {r.pool.name: r for r in s.pool_rows}


def test_panel_shows_the_choices_and_the_cost(scaler):
    r = rows(scaler)
    assert [r.pool.name for r in scaler.pool_rows] == ["cpu", "gpu"]
    assert r["gpu"].partition.options == ("gpu", "gpu-a100", "cpu")
    assert r["gpu"].gpu_type.value == "h100"
    r["gpu"].partition.value = "gpu-a100"          # the partition decides the GPU types
    assert r["gpu"].gpu_type.options == ("a100",)
    assert scaler.account == "startup-helios"
    r["gpu"].count.value = 2                       # 2 x 1 GPU x 2 h
    assert scaler.cost_hours == 4
    assert "costs 4.00 GPU-hours; project startup-helios has 10.00 GPU-hours left" in \
        scaler.cost_line.value


def test_scale_click_scales_each_group(scaler):
    r = rows(scaler)
    r["cpu"].count.value, r["gpu"].count.value = 2, 1
    scaler.scale_button.click()
    scaler.cluster.sync(scaler.cluster._correct_state)
    assert scaler.cluster.pool_sizes() == {"cpu": 2, "gpu": 1}
    assert sorted(n for n, _ in SUBMITTED) == ["cpu-0", "cpu-1", "gpu-0"]
    assert scaler.status == "Scaling to 2 cpu, 1 gpu."
    assert len(scaler.rows) == 3 and {row["pool"] for row in scaler.rows} == {"cpu", "gpu"}
    assert scaler.dashboard.value.count("/user/alice/proxy/") == 2
    scaler.stop_button.click()
    scaler.cluster.sync(scaler.cluster._correct_state)
    assert scaler.cluster.pool_sizes() == {"cpu": 0, "gpu": 0} and len(CANCELLED) == 3


def test_over_budget_is_refused_in_the_panel_and_submits_nothing(scaler):
    rows(scaler)["gpu"].count.value = 6                 # 12 GPU-hours, 10 left
    assert "10.00 GPU-hours left" in scaler.cost_line.value
    scaler.scale_button.click()
    assert scaler.status.startswith("Invalid count of worker group 'gpu'")
    assert "what would fit" in scaler.status
    scaler.cluster.sync(scaler.cluster._correct_state)
    assert SUBMITTED == []


@pytest.mark.parametrize("field, value, words", [
    ("count", 9, "could ever hold"),
    ("runtime", "13:00:00", "outside partition gpu's limit"),
    ("memory", "lots", "not a memory size"),
])
def test_bad_input_is_a_status_line(scaler, field, value, words):
    getattr(rows(scaler)["gpu"], field).value = value
    scaler.scale_button.click()
    assert words in scaler.status and "Traceback" not in scaler.status
    scaler.cluster.sync(scaler.cluster._correct_state)
    assert SUBMITTED == []


def test_adapt_per_group(scaler):
    r = rows(scaler)
    r["cpu"].minimum.value, r["cpu"].maximum.value = 1, 3
    r["gpu"].maximum.value = 0
    scaler.adapt_button.click()
    assert scaler.cluster.adaptive("cpu") == (1, 3) and scaler.cluster.adaptive("gpu") is None
    assert scaler.status == "Adaptive: cpu 1-3."


def test_pytorch_engine_runs_a_function(scaler):
    scaler.engine = "torch"
    assert scaler.run_button in scaler.buttons.children
    assert scaler.scale_button not in scaler.buttons.children
    scaler.run_button.click()                      # no function given
    assert "give the function to run" in scaler.status


def test_panels_of_one_kernel_share_one_squeue(scaler):
    """Five panels redrawing every 50 ms for a second: the squeue of one, not of five (at
    most one per SESSION_PERIOD, 3 s, for the whole kernel)."""
    slurm = scaler.session.slurm
    assert slurm.calls == 1                              # the first panel's first look
    more = [ClusterScaler(cluster=scaler.cluster, refresh_s=0.05) for _ in range(4)]
    try:
        time.sleep(1)
        assert slurm.calls == 1
        assert all(p.table.value == scaler.table.value for p in more)
    finally:
        for p in more:
            p.close()


def test_a_worker_submitted_after_the_last_look_is_not_called_ended(scaler):
    rows(scaler)["cpu"].count.value = 2
    scaler.scale_button.click()
    scaler.cluster.sync(scaler.cluster._correct_state)
    scaler.refresh()                                     # the snapshot predates the sbatch
    assert [r["state"] for r in scaler.rows] == ["SUBMITTED"] * 2
    scaler.session.jobs.invalidate()                     # a look after it: not in squeue
    scaler.refresh()
    assert [r["state"] for r in scaler.rows] == ["ENDED"] * 2
    scaler.stop_button.click()
    scaler.cluster.sync(scaler.cluster._correct_state)
