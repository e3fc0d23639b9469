"""A real, throwaway PostgreSQL for tests: Debian's PostgreSQL, one cluster per session,
started by the site-demo's :class:`workbench.demo.postgres.LocalPostgres`.

Import the fixture in a test module that needs it::

    from tests.pg import postgres_url  # noqa: F401

Fixtures:
- ``postgres_url`` (session): the SQLAlchemy URL of an empty database ``workbench`` owned by
  the role ``workbench`` in a new cluster, e.g.
  ``postgresql+psycopg://workbench:PASSWORD@127.0.0.1:PORT/workbench``: data and socket in a
  temporary directory, a free port on 127.0.0.1, a random password (in the URL only: a
  throwaway cluster), run as the user ``postgres``. Stopped and removed after the session.
  Fails, never skips, when PostgreSQL's programs are missing.

Helpers:
- ``new_database(postgres_url)``: the URL of another new, empty database in that cluster
  (owned by the same role), for a test that needs tables of its own.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import tempfile
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from workbench.demo.postgres import LocalPostgres

#: the role and database the tests get
ROLE = DATABASE = "workbench"

#: the one cluster of this test session: each module that imports the fixture gets a copy
#: of it, and every copy shares this
_cluster: dict = {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url(request) -> str:
    """The URL of an empty database in a throwaway PostgreSQL cluster (see the module)."""
    if "url" not in _cluster:
        _cluster["url"] = _start(request.config.add_cleanup)
    return _cluster["url"]


def _start(at_exit) -> str:
    """A new cluster's ``workbench`` database; ``at_exit(stop)`` makes it stop and vanish
    when the session ends."""
    root = Path(tempfile.mkdtemp(prefix="workbench-pg-"))
    server = LocalPostgres(root / "data", _free_port())

    def stop() -> None:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)

    password = secrets.token_urlsafe(16)
    try:
        server.start()
        server.ensure_database(ROLE, password, DATABASE)
    except RuntimeError as e:  # not installed, or did not start: say why, never skip
        log = root / "postgres.log"
        text = log.read_text() if log.exists() else ""
        stop()
        pytest.fail(f"no PostgreSQL for the tests: {e}"
                    + (f"\nits log:\n{text}" if text else ""), pytrace=False)
    except BaseException:
        stop()
        raise
    _cluster["server"] = server
    at_exit(stop)
    return make_url(server.url(ROLE, DATABASE)).set(password=password).render_as_string(
        hide_password=False)


def new_database(url: str) -> str:
    """A new, empty database in the session's cluster (``url``: :func:`postgres_url`),
    owned by the same role; its URL."""
    u = make_url(url)
    name = f"t_{uuid.uuid4().hex[:12]}"
    _cluster["server"].sql(f'CREATE DATABASE "{name}" OWNER "{u.username}";')
    return u.set(database=name).render_as_string(hide_password=False)
