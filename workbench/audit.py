"""The one place for audit records: who did what to which job, session or dataset, and when.

An append-only table in a real database through SQLAlchemy: a SQLite file under
``AIFACTORY_HOME/hub`` by default, or any SQLAlchemy URL (e.g.
``postgresql+psycopg://workbench@db.example.org/workbench``): the site's database, given by
``WORKBENCH_DATABASE_URL`` (the site file's ``database``), which then serves every writer
(spawner, hub services, CLI). The table keeps the layout it
had as a plain SQLite file, so records written before stay readable.

``AuditLog(path_or_url).record(actor, action, subject, **details)`` appends;
``records(...)`` reads back, newest last, filtered by user, action (``dataset.*`` for a
family), subject or dataset, and time range. ``workbench audit`` reads it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
)

from . import db
from .paths import DATABASE_ENV

#: the environment variable that points every writer at one database (the site's)
URL_ENV = DATABASE_ENV

_metadata = MetaData()
audit_table = Table(
    "audit", _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(40), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(255), nullable=False),
    Column("subject", Text, nullable=False),
    Column("details", Text, nullable=False),
    sqlite_autoincrement=True,
)
_indexes = (Index("audit_action", audit_table.c.action),
            Index("audit_actor", audit_table.c.actor),
            Index("audit_at", audit_table.c.at))
_INSERT = insert(audit_table)

@dataclass(frozen=True)
class AuditRecord:
    at: str
    actor: str
    action: str
    subject: str
    details: dict


def database_url(path: Path | str) -> str:
    """``WORKBENCH_DATABASE_URL`` when set; else ``path`` if it is a URL; else a SQLite
    file."""
    env = os.environ.get(URL_ENV, "").strip()
    if env:
        return env
    return db.url_of(path)


def _iso(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds")


class AuditLog(db.Store):
    """``record()`` appends; ``records()`` reads back, newest last.

    ``path``: a SQLite file (the default store) or a SQLAlchemy URL; ``WORKBENCH_DATABASE_URL``,
    when set, wins over both, so every writer shares one database.
    """

    metadata, indexes = _metadata, _indexes

    @staticmethod
    def url_for(path_or_url: Path | str) -> str:
        return database_url(path_or_url)

    def record(self, actor: str, action: str, subject: str, **details) -> AuditRecord:
        rec = AuditRecord(datetime.now(UTC).isoformat(timespec="seconds"),
                          actor, action, subject, details)
        with self.engine.begin() as conn:
            # one statement, parameters apart: SQLAlchemy compiles it once (building it
            # with .values() each time was half of a dataset open's cost in the catalogue)
            conn.execute(_INSERT, {"at": rec.at, "actor": actor, "action": action,
                                   "subject": subject,
                                   "details": json.dumps(details, sort_keys=True, default=str)})
        return rec

    def records(self, action: str | None = None, actor: str | None = None,
                limit: int | None = 1000, *, subject: str | None = None,
                dataset: str | None = None, since: datetime | str | None = None,
                until: datetime | str | None = None) -> list[AuditRecord]:
        """The latest ``limit`` records (None: all) matching every filter given, oldest first.

        ``action``: an action, or a family ending in ``*`` (``"dataset.*"``); ``actor``: the
        user; ``subject``: the job, session or dataset acted on; ``dataset``: records about a
        dataset (its ``dataset.*`` actions); ``since``/``until``: a time range (datetimes, or
        ISO strings like ``2026-11-26T15:00:00+00:00``), ``since`` included, ``until`` not.
        """
        t = audit_table.c
        query = select(t.at, t.actor, t.action, t.subject, t.details)
        if action:
            if action.endswith("*"):
                prefix = action[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                query = query.where(t.action.like(prefix + "%", escape="\\"))
            else:
                query = query.where(t.action == action)
        if actor:
            query = query.where(t.actor == actor)
        if subject:
            query = query.where(t.subject == subject)
        if dataset:
            query = query.where(t.subject == dataset, t.action.like("dataset.%"))
        if since is not None:
            query = query.where(t.at >= _iso(since))
        if until is not None:
            query = query.where(t.at < _iso(until))
        query = query.order_by(t.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [AuditRecord(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in reversed(rows)]

    # -- for a reader that keeps its own view of some actions (e.g. the licence acceptances)

    def tally(self, actions: Iterable[str]) -> tuple[int, int]:
        """How many records of ``actions`` there are, and the number of the latest (0: none):
        a reader's view is current while both stay the same."""
        t = audit_table.c
        query = select(func.count(), func.coalesce(func.max(t.id), 0)).where(
            t.action.in_(list(actions)))
        with self.engine.connect() as conn:
            count, last = conn.execute(query).one()
        return int(count), int(last)

    def counts(self, actions: Iterable[str]) -> dict[tuple[str, str], int]:
        """How many records there are of each (action, subject), for ``actions``."""
        t = audit_table.c
        query = select(t.action, t.subject, func.count()).where(
            t.action.in_(list(actions))).group_by(t.action, t.subject)
        with self.engine.connect() as conn:
            return {(r[0], r[1]): int(r[2]) for r in conn.execute(query)}

    def numbered(self, actions: Iterable[str], after: int = 0) -> list[tuple[int, AuditRecord]]:
        """The records of ``actions`` numbered above ``after`` (0: all), oldest first, each
        with its number."""
        t = audit_table.c
        query = select(t.id, t.at, t.actor, t.action, t.subject, t.details).where(
            t.action.in_(list(actions)), t.id > after).order_by(t.id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [(r[0], AuditRecord(r[1], r[2], r[3], r[4], json.loads(r[5]))) for r in rows]
