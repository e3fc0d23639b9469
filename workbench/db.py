"""The one way to the workbench's own databases (the audit store, the help requests).

A store is given a SQLite file's path (the demo's default, under ``AIFACTORY_HOME/hub``) or a
SQLAlchemy URL (a site's PostgreSQL, e.g. ``postgresql+psycopg://workbench@db.example.eu/
workbench``). :func:`url_of` turns either into a URL; :func:`engine` gives the one engine of
a URL in this process, with the store's tables created on first use (tables already there,
written by an earlier version, are kept as they are).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import Index, MetaData, create_engine, event
from sqlalchemy.engine import Engine

#: seconds a SQLite writer waits for another's lock before it fails ("database is locked")
SQLITE_BUSY_SECONDS = 10

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
            metadata.create_all(made, checkfirst=True)
            for index in indexes:
                index.create(made, checkfirst=True)
            _created.add((url, id(metadata)))
        return made


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
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    return made
