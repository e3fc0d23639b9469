"""The benchmarks' options: ``--checkout`` measures a source tree only when given; the storm's
own options, and how it tells a waiting user who was told why from one who was not."""

from __future__ import annotations

import argparse
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from workbench.slurm.models import Job, JobState
from workbench.waits import waiting_message

ROOT = Path(__file__).parents[2]


@pytest.fixture
def hubs(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the scripts import as siblings
    import _hubs

    return _hubs


def test_without_checkout_the_installed_code_runs_even_from_a_checkout(hubs, monkeypatch,
                                                                       tmp_path):
    parser = argparse.ArgumentParser()
    hubs.add_common_options(parser, "logs")
    monkeypatch.chdir(ROOT)  # holds spawners/ and extensions/: must not become the default
    assert parser.parse_args([]).checkout is None
    assert parser.parse_args(["--checkout", str(ROOT)]).checkout == str(ROOT)
    with pytest.raises(SystemExit):
        parser.parse_args(["--checkout", str(tmp_path)])


def test_a_checkout_goes_first_on_the_jobs_path(hubs, tmp_path):
    ports = hubs.HubPorts.from_base(8100)
    plain = hubs.common_settings(tmp_path, ports, ["wbbench"], "t", 300)
    assert "environment" not in plain["Spawner"]
    given = hubs.common_settings(tmp_path, ports, ["wbbench"], "t", 300, checkout=str(ROOT))
    assert given["Spawner"]["environment"] == {"PYTHONPATH": str(ROOT)}


@pytest.fixture
def dashboards(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import _growth, dashboards

    return dashboards, _growth


def test_the_dashboards_growth_curves_take_sorted_size_lists(dashboards):
    bench, _ = dashboards
    args = bench.parser().parse_args(["--sizes", "200000,20000,100000",
                                      "--queue-sizes", "1000,0,100"])
    assert args.sizes == [20000, 100000, 200000]
    assert args.queue_sizes == [0, 100, 1000]
    assert args.history_days == 92 and not args.no_browser
    plain = bench.parser().parse_args([])
    assert plain.sizes is None and plain.queue_sizes is None  # the usual run: no curve
    for bad in ("20k", "", "-5,10", "1,,2"):
        with pytest.raises(SystemExit):
            bench.parser().parse_args(["--sizes", bad])


def test_queue_sessions_belong_to_benchmark_users_and_no_running_hub(dashboards):
    _, growth = dashboards
    users = growth.queue_users(1000)
    assert users == [f"wbbench{i:03d}" for i in range(1, 21)]  # 50 sessions each
    assert growth.queue_users(0) == ["wbbench001"]
    # a hub's id is its host's name unless a site names it (SlurmGPUSpawner.hub_id); the
    # benchmark's own hubs are "benchmark": none of them takes these jobs for its orphans
    assert growth.HUB_ID not in ("", socket.gethostname(), "benchmark")


@pytest.fixture
def storm(hubs):
    import storm

    return storm


def test_the_storm_defaults_to_40_users_within_a_second_on_both_hubs(storm):
    args = storm.parse_args([])
    assert (args.users, args.within, args.probe_interval) == (40, 1.0, 0.1)
    assert args.kinds == ["ours", "stock"]
    assert args.stop_limit == 60
    assert args.checkout is None and not args.keep_logs
    assert storm.parse_args(["--kinds", "stock,ours"]).kinds == ["stock", "ours"]


@pytest.mark.parametrize("bad", [["--kinds", "ours,mine"], ["--kinds", ","], ["--users", "1"],
                                 ["--users", "201"], ["--within", "-1"],
                                 ["--probe-interval", "0"], ["--stop-limit", "0"]])
def test_the_storm_refuses_options_it_cannot_run(storm, bad):
    with pytest.raises(SystemExit):
        storm.parse_args(bad)


def test_a_profiled_storm_keeps_its_profiles(storm):
    args = storm.parse_args(["--py-spy", "/tmp/spy/bin/py-spy"])
    assert args.keep_logs and args.py_spy == "/tmp/spy/bin/py-spy"


def _pending(job_id: int, reason: str) -> Job:
    return Job(job_id=job_id, name="spawner-jupyterhub", user="wbbench002",
               account="benchmarks", partition="gpu-a100", state=JobState.PENDING,
               reason=reason, gpus=1, gpu_type="a100",
               submit_time=datetime(2026, 12, 6, 2, 0, job_id % 60, tzinfo=UTC))


@pytest.mark.parametrize("reason", ["Resources", "Priority", "None", "QOSMaxWhatever"])
def test_our_waiting_message_tells_why_and_where_stocks_does_not(storm, reason):
    jobs = [_pending(7, "Priority"), _pending(8, reason)]
    ours = waiting_message(jobs[1], jobs, allocations=None)
    assert storm.told_why(ours) and storm.told_position(ours), ours
    assert not storm.told_why("Pending in queue...")  # stock batchspawner's progress
    assert not storm.told_position("Pending in queue...")


def test_latency_percentiles_are_in_milliseconds(storm):
    figures = storm.percentiles([0.001 * i for i in range(1, 101)])
    assert figures == {"n": 100, "p50_ms": 50.5, "p99_ms": 99.0, "max_ms": 100.0}
    assert storm.percentiles([])["p99_ms"] is None


@pytest.fixture
def award(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import award

    return award


def test_the_award_benchmark_defaults_to_3_runs_of_50_gpu_hours_on_the_running_hub(award):
    args = award.parse_args([])
    assert (args.runs, args.hours, args.hub, args.json) == (3, 50.0, "http://127.0.0.1:8000/",
                                                            None)
    assert award.parse_args(["--runs", "1", "--hours", "0.5"]).hours == 0.5
    assert award.GOAL_S == 10


@pytest.mark.parametrize("bad", [["--runs", "0"], ["--runs", "21"], ["--hours", "0"],
                                 ["--hours", "-5"], ["--hours", "1001"], ["--runs", "x"]])
def test_the_award_benchmark_refuses_options_it_cannot_run(award, bad):
    with pytest.raises(SystemExit):
        award.parse_args(bad)
