"""The benchmarks' shared options: ``--checkout`` measures a source tree only when given."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest

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
