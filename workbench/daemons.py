"""Start, find and stop the local AI Factory's daemons by their pid files."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def wait_until(check: Callable[[], T], what: str, timeout: float = 60.0) -> T:
    """Wait with exponential backoff (0.1 s doubling to 2 s) until ``check()`` is truthy, and
    return its value.

    Raises TimeoutError naming ``what`` when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    delay = 0.1
    while not (value := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
    return value


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of ``pid``, from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[19])  # state (field 3), starttime (field 22)


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def read_pid(pidfile: Path, program: str | None = None) -> int | None:
    """The pid in ``pidfile`` if that process is alive and is the one the file names, else
    None. A pid file written by :func:`spawn` holds the process's start time too; one a
    daemon wrote itself (slurmctld, munged, mariadbd) is checked against ``program``, the
    process's name. So a dead daemon's pid, reused by an unrelated process, is never it."""
    try:
        fields = pidfile.read_text().split()
        pid = int(fields[0])
        started = int(fields[1]) if len(fields) > 1 else None
    except (FileNotFoundError, ValueError, IndexError):
        return None
    stat = _stat(pid)
    if stat is None or stat[0] == "Z":  # gone, or a zombie
        return None
    if started is not None and stat[1] != started:
        log.info("%s: pid %s is another process now (started later)", pidfile, pid)
        return None
    if program is not None and _comm(pid) != program[:15]:
        log.info("%s: pid %s is %r now, not %s", pidfile, pid, _comm(pid), program)
        return None
    return pid


def spawn(argv: list[str], logfile: Path, pidfile: Path, env: dict | None = None,
          cwd: Path | None = None) -> int:
    """Start a foreground program in its own session, logging to ``logfile``; record its pid."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=cwd, start_new_session=True,
        )
    stat = _stat(proc.pid)
    pidfile.write_text(f"{proc.pid} {stat[1]}\n" if stat else f"{proc.pid}\n")
    log.info("started %s (pid %s), log %s", argv[0], proc.pid, logfile)
    return proc.pid


def stop(name: str, pidfile: Path, timeout: float = 30.0, program: str | None = None) -> bool:
    """SIGTERM the process in ``pidfile`` (see :func:`read_pid` for ``program``), SIGKILL after
    ``timeout``; True if one was running. A stale pid file is removed, nothing signalled."""
    pid = read_pid(pidfile, program)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    log.info("stopping %s (pid %s)", name, pid)
    os.kill(pid, signal.SIGTERM)
    try:
        wait_until(lambda: read_pid(pidfile, program) is None, f"{name} stop", timeout)
    except TimeoutError:
        log.warning("%s (pid %s) ignored SIGTERM; killing it", name, pid)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: read_pid(pidfile, program) is None, f"{name} kill", 10)
    pidfile.unlink(missing_ok=True)
    return True
