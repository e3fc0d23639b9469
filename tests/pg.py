"""A real, throwaway PostgreSQL for tests: Debian's PostgreSQL 15, one cluster per session.

Import the fixture in a test module that needs it::

    from tests.pg import postgres_url  # noqa: F401

Fixtures:
- ``postgres_url`` (session): the SQLAlchemy URL of an empty database ``workbench`` in a new
  cluster, e.g. ``postgresql+psycopg://postgres@/workbench?host=/tmp/workbench-pg-x1y2``:
  data and unix socket in a temporary directory, no TCP port, trust login (nothing else
  can reach it), run as the user ``postgres`` when the tests run as root (``initdb`` refuses
  root). Stopped and removed after the session. Fails, never skips, when PostgreSQL's
  programs are missing.

Helpers:
- ``new_database(postgres_url)``: the URL of another new, empty database in that cluster,
  for a test that needs tables of its own.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

#: Debian's PostgreSQL 15 (the package postgresql-15)
PG_BIN = Path("/usr/lib/postgresql/15/bin")
#: the cluster's superuser, and the Unix user it runs as when the tests run as root
SUPERUSER = "postgres"
#: seconds pg_ctl waits for the server to start or stop
START_TIMEOUT = 30

_SETTINGS = """
# a throwaway cluster for tests (tests/pg.py): a unix socket only, speed over durability
listen_addresses = ''
unix_socket_directories = '{socket_dir}'
fsync = off
synchronous_commit = off
full_page_writes = off
"""


def _as_owner(argv: list[str]) -> list[str]:
    """``argv`` run as the cluster's owner: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() == 0:
        return ["runuser", "-u", SUPERUSER, "--", *argv]
    return argv


def _run(argv: list[str], log: Path | None = None) -> None:
    """Run ``argv`` as the cluster's owner; on failure, fail the tests with its output (and
    the server's ``log``)."""
    done = subprocess.run(_as_owner(argv), capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        server_log = log.read_text() if log is not None and log.exists() else ""
        pytest.fail(f"{' '.join(argv)} failed with exit code {done.returncode}\n"
                    f"stdout: {done.stdout}\nstderr: {done.stderr}"
                    + (f"\nthe server's log:\n{server_log}" if server_log else ""),
                    pytrace=False)


def _create_database(url: str, name: str) -> str:
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    u = make_url(url)
    with psycopg.connect(host=u.query["host"], user=u.username, dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return f"postgresql+psycopg://{u.username}@/{name}?host={u.query['host']}"


def new_database(url: str) -> str:
    """A new, empty database in the cluster of ``url`` (a :func:`postgres_url`); its URL."""
    return _create_database(url, f"t_{uuid.uuid4().hex[:12]}")


#: the one cluster of this test session: each module that imports the fixture gets a copy
#: of it, and every copy shares this
_cluster: dict[str, str] = {}


@pytest.fixture(scope="session")
def postgres_url(request) -> str:
    """The URL of an empty database in a throwaway PostgreSQL cluster (see the module)."""
    if "url" not in _cluster:
        _cluster["url"] = _start(request.config.add_cleanup)
    return _cluster["url"]


def _start(at_exit) -> str:
    """A new cluster's ``workbench`` database; ``at_exit(stop)`` makes it stop and vanish
    when the session ends."""
    missing = [p for p in ("initdb", "pg_ctl", "postgres") if not (PG_BIN / p).exists()]
    if missing:
        pytest.fail(f"PostgreSQL 15 is not installed: {', '.join(missing)} missing in "
                    f"{PG_BIN} (apt-get install postgresql-15)", pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="workbench-pg-"))  # short: a socket path's limit
    data, log = root / "data", root / "server.log"

    def stop() -> None:
        try:
            if (data / "postmaster.pid").exists():  # started, or half
                argv = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                        "-t", str(START_TIMEOUT), "stop"]
                done = subprocess.run(_as_owner(argv), capture_output=True, text=True,
                                      timeout=60)
                if done.returncode != 0:
                    raise RuntimeError(f"{' '.join(argv)} failed with exit code "
                                       f"{done.returncode}: {done.stderr}")
        finally:
            shutil.rmtree(root, ignore_errors=True)

    try:
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam(SUPERUSER)
            except KeyError:
                pytest.fail(f"no Unix user {SUPERUSER!r} to run PostgreSQL as (the "
                            "postgresql-15 package makes it)", pytrace=False)
            os.chown(root, owner.pw_uid, owner.pw_gid)
        _run([str(PG_BIN / "initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust",
              "-E", "UTF8", "--no-sync", "--no-instructions"])
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(_SETTINGS.format(socket_dir=root))
        _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w",
              "-t", str(START_TIMEOUT), "start"], log)
        url = _create_database(f"postgresql+psycopg://{SUPERUSER}@/postgres?host={root}",
                               "workbench")
    except BaseException:
        stop()
        raise
    at_exit(stop)
    return url
