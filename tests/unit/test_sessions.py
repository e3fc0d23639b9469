"""A user's past sessions from the audit store and recorded accounting (a stand-in ``sacct``
that prints what this cluster's sacct printed; tests/integration/test_past_sessions.py runs
the same path against the live cluster)."""

from __future__ import annotations

import getpass
import os
from pathlib import Path

import pytest

from workbench.audit import AuditLog
from workbench.sessions import past_sessions
from workbench.slurm import SlurmClient, SlurmError

FIXTURE = Path(__file__).parent.parent / "fixtures" / "sacct-efficiency-22.05.txt"


@pytest.fixture
def sacct(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "sacct"
    script.write_text(f"#!/bin/sh\ncat {FIXTURE}\n")
    os.chmod(script, 0o755)
    return SlurmClient(bindir=str(bindir))


def test_sessions_newest_first_with_how_they_ended_and_what_they_cost(tmp_path, sacct):
    """The recorded jobs are alice's; here they belong to whoever runs the test, whose own
    home holds the output file (one of another user's is never shown)."""
    me = getpass.getuser()
    audit = AuditLog(tmp_path / "audit.sqlite")
    opts = {"partition": "gpu", "account": "startup-helios", "gpus": 1, "cpus": 1,
            "memory": "2G", "runtime": "01:00:00"}
    for job in (12, 101):
        audit.record(me, "session.submit", f"{me}/", job_id=job, **opts)
    audit.record(me, "session.cancel", f"{me}/", job_id=12, idle_s=30)  # stopped by its owner
    audit.record(me, "session.cancel", f"{me}/", job_id=101, idle_s=4000)  # the culler
    audit.record("bob", "session.submit", "bob/", job_id=8, **opts)  # someone else's
    home = tmp_path / "home"
    home.mkdir()
    (home / ".jupyterhub-slurm-101.log").write_text("starting\nserver ready\n")
    got = past_sessions(me, audit, sacct, cull_timeout_s=3600,
                        home_of=lambda user: home)
    assert [s.job_id for s in got] == [101, 12]  # newest first, only theirs
    culled, stopped = got
    assert culled.ended.startswith("idle-culled after 60 min")
    assert stopped.ended == "stopped by you"
    assert (stopped.project, stopped.partition, stopped.node, stopped.gpus) == (
        "startup-helios", "gpu", "h100-1", 1)
    assert stopped.gpu_hours == round(86 / 3600, 3)  # 1 GPU for sacct's 86 s
    # CPU efficiency as seff: TotalCPU 11.002 s / (86 s x 1 CPU)
    assert stopped.efficiency["cpu_efficiency"] == pytest.approx(11.002 / 86, abs=1e-3)
    assert stopped.efficiency["peak_memory_bytes"] == 247676 * 1024
    assert stopped.efficiency["gpu_util_pct"] is None  # fake GPUs: not measured
    assert culled.output.endswith(".jupyterhub-slurm-101.log")
    assert culled.output_tail.splitlines()[-1] == "server ready"


def test_no_sessions_need_no_accounting_and_accounting_down_is_an_error(tmp_path):
    audit = AuditLog(tmp_path / "audit.sqlite")
    broken = SlurmClient(bindir=str(tmp_path))  # no sacct there
    assert past_sessions(getpass.getuser(), audit, broken) == []
    audit.record(getpass.getuser(), "session.submit", "x/", job_id=5, partition="cpu")
    with pytest.raises(SlurmError):
        past_sessions(getpass.getuser(), audit, broken)
