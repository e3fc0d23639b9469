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


def read_pid(pidfile: Path) -> int | None:
    """The pid in ``pidfile`` if that process is alive, else None."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    # a zombie is not alive
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(") ", 1)[1].startswith("Z"):
                return None
    except (FileNotFoundError, IndexError):
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
    pidfile.write_text(f"{proc.pid}\n")
    log.info("started %s (pid %s), log %s", argv[0], proc.pid, logfile)
    return proc.pid


def stop(name: str, pidfile: Path, timeout: float = 30.0) -> bool:
    """SIGTERM the process in ``pidfile``, SIGKILL after ``timeout``; True if one was running."""
    pid = read_pid(pidfile)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    log.info("stopping %s (pid %s)", name, pid)
    os.kill(pid, signal.SIGTERM)
    try:
        wait_until(lambda: read_pid(pidfile) is None, f"{name} stop", timeout)
    except TimeoutError:
        log.warning("%s (pid %s) ignored SIGTERM; killing it", name, pid)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: read_pid(pidfile) is None, f"{name} kill", 10)
    pidfile.unlink(missing_ok=True)
    return True
