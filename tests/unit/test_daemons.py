"""Pid files: ``workbench down`` signals the daemon it started, never a process that merely
reuses a dead daemon's pid. Real processes (``sleep``), real /proc."""

from __future__ import annotations

import subprocess
import sys

import pytest

from workbench import daemons


@pytest.fixture
def sleeper():
    procs = []

    def start():
        procs.append(subprocess.Popen(["sleep", "300"]))
        return procs[-1]

    yield start
    for p in procs:
        p.kill()
        p.wait()


def test_a_spawned_daemon_is_found_and_stopped(tmp_path):
    pidfile = tmp_path / "d.pid"
    pid = daemons.spawn(["sleep", "300"], tmp_path / "d.log", pidfile)
    assert len(pidfile.read_text().split()) == 2  # the pid and its start time
    assert daemons.read_pid(pidfile) == pid
    assert daemons.stop("d", pidfile, timeout=5)
    assert not pidfile.exists() and daemons.read_pid(pidfile) is None


def test_a_reused_pid_is_not_the_daemon(tmp_path, sleeper):
    """The pid file of a daemon that died; its pid now belongs to another process (started
    later): nothing is signalled, the stale file goes."""
    other = sleeper()
    pidfile = tmp_path / "d.pid"
    start = daemons._stat(other.pid)[1]
    pidfile.write_text(f"{other.pid} {start - 100}\n")  # the dead daemon started earlier
    assert daemons.read_pid(pidfile) is None
    assert not daemons.stop("d", pidfile, timeout=5)
    assert other.poll() is None  # still running: not signalled
    assert not pidfile.exists()


def test_a_daemons_own_pid_file_is_checked_against_its_name(tmp_path, sleeper):
    """slurmctld, munged, mariadbd write their pid files themselves (the pid only): the
    process must bear the daemon's name."""
    other = sleeper()
    pidfile = tmp_path / "slurmctld.pid"
    pidfile.write_text(f"{other.pid}\n")
    assert daemons.read_pid(pidfile, "slurmctld") is None
    assert not daemons.stop("slurmctld", pidfile, timeout=5, program="slurmctld")
    assert other.poll() is None
    pidfile.write_text(f"{other.pid}\n")
    assert daemons.read_pid(pidfile, "sleep") == other.pid


def test_dead_and_zombie_processes_are_not_running(tmp_path):
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    daemons.wait_until(lambda: daemons._stat(zombie.pid)[0] == "Z", "a zombie", 10)
    pidfile = tmp_path / "z.pid"
    pidfile.write_text(f"{zombie.pid}\n")
    assert daemons.read_pid(pidfile) is None
    zombie.wait()
    assert daemons.read_pid(pidfile) is None  # reaped: gone
    pidfile.write_text("not a pid\n")
    assert daemons.read_pid(pidfile) is None
