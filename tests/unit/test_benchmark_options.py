"""The benchmarks' shared options: ``--checkout`` measures a source tree only when given."""

from __future__ import annotations

import argparse
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
