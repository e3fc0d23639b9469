"""The workbench's own databases (workbench.db): paths and URLs, one engine per URL, and the
audit and help stores in a site's PostgreSQL beside the hub's tables."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, text

from tests.pg import new_database, postgres_url  # noqa: F401
from workbench import db
from workbench.audit import AuditLog
from workbench.help import HelpError, HelpStore


def test_a_path_becomes_a_sqlite_url_and_a_url_stays(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert db.url_of("hub/audit.sqlite") == f"sqlite:///{tmp_path}/hub/audit.sqlite"
    assert db.url_of(tmp_path / "x.sqlite") == f"sqlite:///{tmp_path}/x.sqlite"
    url = "postgresql+psycopg://workbench@db.example.eu/workbench"
    assert db.url_of(url) == url


def test_one_engine_per_url_and_sqlite_in_wal_mode(tmp_path):
    path = tmp_path / "new" / "dir" / "a.sqlite"  # its directory is made
    url = db.url_of(path)
    first = db.engine(url)
    assert db.engine(url) is first
    assert db.engine(db.url_of(tmp_path / "b.sqlite")) is not first
    with first.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == (
            db.SQLITE_BUSY_SECONDS * 1000)
    assert path.exists()
    # a store on the same file shares the engine
    assert AuditLog(path).engine is first and HelpStore(path).engine is first


def test_the_audit_store_in_postgresql(postgres_url):  # noqa: F811
    url = new_database(postgres_url)
    log = AuditLog(url)
    assert log.url == url
    log.record("alice", "session.submit", "alice/", job_id=7, partition="gpu")
    log.record("sam", "dataset.open", "imagenet", mode="ro")
    log.record("bob", "dataset.open", "coco", mode="ro")
    later = AuditLog(url)  # another writer, as the hub and its services are
    assert [(r.actor, r.action, r.subject) for r in later.records()] == [
        ("alice", "session.submit", "alice/"), ("sam", "dataset.open", "imagenet"),
        ("bob", "dataset.open", "coco")]
    [first] = later.records(actor="alice")
    assert first.details == {"job_id": 7, "partition": "gpu"}
    assert datetime.fromisoformat(first.at) > datetime.now(UTC) - timedelta(minutes=1)
    assert [r.subject for r in later.records("dataset.*")] == ["imagenet", "coco"]
    assert [r.actor for r in later.records(dataset="coco")] == ["bob"]
    assert [r.actor for r in later.records(limit=1)] == ["bob"]
    assert later.records(until=first.at) == []
    assert later.tally(["dataset.open"]) == (2, 3)
    assert [n for n, _ in later.numbered(["dataset.open"], after=2)] == [3]
    with later.engine.connect() as conn:
        indexes = {i["name"] for i in inspect(conn).get_indexes("audit")}
    assert {"audit_action", "audit_actor", "audit_at"} <= indexes


def test_hub_audit_and_help_share_one_site_database(postgres_url):  # noqa: F811
    """A site's one ``database`` URL serves the hub, the audit store and the help requests:
    their tables do not collide."""
    from jupyterhub import orm

    url = new_database(postgres_url)
    # the hub's tables, as JupyterHub makes them (without its alembic stamp: seconds)
    orm.Base.metadata.create_all(db.engine(url))
    with db.engine(url).begin() as conn:
        conn.execute(orm.User.__table__.insert().values(name="alice"))
    AuditLog(url).record("alice", "session.submit", "alice/")
    store = HelpStore(url)
    r = store.add("alice", "", "group:support", "it fails", "", 60, {})
    with pytest.raises(HelpError) as e:
        store.add("alice", "", "group:support", "again", "", 60, {})
    assert e.value.status == 409
    with db.engine(url).connect() as conn:
        tables = set(inspect(conn).get_table_names())
        assert {"users", "audit", "help_requests"} <= tables
        assert conn.execute(text("SELECT name FROM users")).scalars().all() == ["alice"]
        assert conn.execute(text("SELECT owner, state FROM help_requests WHERE id = :id"),
                            {"id": r.id}).one() == ("alice", "open")
        [indexdef] = conn.execute(text(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'one_open_per_server'")).scalars()
    assert "UNIQUE" in indexdef and "WHERE (state = 'open'::text)" in indexdef


def _first_use(url: str, start, errors) -> None:
    start.wait(30)
    try:
        AuditLog(url).record("hub", "session.submit", "alice/")
        HelpStore(url).open_requests()
    except Exception as e:  # noqa: BLE001 - reported by the test
        errors.put(repr(e))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_processes_starting_at_once_on_an_empty_database_all_start(kind, tmp_path, request):
    """At a site's first ``up`` the hub and its services each create the tables they
    need, at the same moment: every one of them must come up."""
    url = (db.url_of(tmp_path / "first.sqlite") if kind == "sqlite"
           else new_database(request.getfixturevalue("postgres_url")))
    fork = multiprocessing.get_context("fork")
    start, errors = fork.Barrier(8), fork.Queue()
    procs = [fork.Process(target=_first_use, args=(url, start, errors)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    failed = [errors.get() for _ in range(errors.qsize())]
    assert failed == [] and [p.exitcode for p in procs] == [0] * 8
    assert len(AuditLog(url).records()) == 8
