"""The one way to the workbench's own databases (the audit store, the help requests).

A store is given a SQLite file's path (the demo's default, under ``AIFACTORY_HOME/hub``) or a
SQLAlchemy URL (a site's PostgreSQL, e.g. ``postgresql+psycopg://workbench@db.example.eu/
workbench``). :func:`url_of` turns either into a URL; :func:`engine` gives the one engine of
a URL in this process, with the store's tables created on first use (tables already there,
written by an earlier version, are kept as they are).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import Index, MetaData, create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.schema import CreateIndex, CreateTable

from .daemons import wait_until

#: seconds a SQLite writer waits for another's lock before it fails ("database is locked")
SQLITE_BUSY_SECONDS = 10

#: the PostgreSQL advisory lock that makes the stores' tables one creator at a time
#: (any number: it only has to be the same in every process)
DDL_LOCK = 0x776F726B62656E63

_engines: dict[str, Engine] = {}
_created: set[tuple[str, int]] = set()  # (url, id(metadata)) whose tables exist
_lock = threading.Lock()


def url_of(path_or_url: Path | str) -> str:
    """A SQLAlchemy URL: ``path_or_url`` itself if it is one, else ``sqlite:///`` and the
    file's absolute path."""
    text = str(path_or_url)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).resolve()}"


def engine(url: str, metadata: MetaData | None = None,
           indexes: Iterable[Index] = ()) -> Engine:
    """The engine of ``url`` (made once per process), with ``metadata``'s tables and
    ``indexes`` created in its database once, where they are missing."""
    with _lock:
        made = _engines.get(url)
        if made is None:
            made = _engines[url] = _make(url)
        if metadata is not None and (url, id(metadata)) not in _created:
            _create(made, metadata, indexes)
            _created.add((url, id(metadata)))
        return made


def _create(made: Engine, metadata: MetaData, indexes: Iterable[Index]) -> None:
    """The tables and indexes that are missing, safe while other processes (the hub, its
    services) do the same at once: SQLite runs each ``IF NOT EXISTS`` under its write lock;
    PostgreSQL's is not safe against a concurrent creator, so a lock makes them take turns."""
    with made.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DDL_LOCK})
        every = {}
        for table in metadata.sorted_tables:
            conn.execute(CreateTable(table, if_not_exists=True))
            every.update((id(i), i) for i in table.indexes)
        every.update((id(i), i) for i in indexes)
        for index in every.values():
            conn.execute(CreateIndex(index, if_not_exists=True))


class Store:
    """A store of the workbench's own tables (the audit store, help requests, presets):
    ``path_or_url`` a SQLite file or a SQLAlchemy URL. A subclass names its ``metadata``
    (and any ``indexes`` not on its tables); every method takes a connection of
    :attr:`engine`, the one engine of that URL in this process."""

    metadata: MetaData
    indexes: tuple[Index, ...] = ()

    def __init__(self, path_or_url: Path | str):
        self.path = path_or_url
        self.url = self.url_for(path_or_url)

    @staticmethod
    def url_for(path_or_url: Path | str) -> str:
        return url_of(path_or_url)

    @property
    def engine(self) -> Engine:
        return engine(self.url, self.metadata, self.indexes)


def _make(url: str) -> Engine:
    if not url.startswith("sqlite:///"):
        return create_engine(url, pool_pre_ping=True)
    Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    made = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})

    @event.listens_for(made, "connect")
    def _wal(dbapi_conn, _record):
        # readers never wait for a writer; a commit survives any writer's crash without an
        # fsync each (a power cut may lose the last moments: where that matters, use
        # PostgreSQL)
        wait_until(lambda: _to_wal(dbapi_conn), "switching the SQLite file to WAL",
                   SQLITE_BUSY_SECONDS)
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    return made


def _to_wal(dbapi_conn) -> bool:
    """Switch to WAL (the mode is the file's, kept once set); False while another process is
    switching a new file at the same moment: SQLite refuses at once rather than wait, for
    a deadlock otherwise."""
    try:
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError as e:
        if "locked" not in str(e):
            raise
        return False
    return True
