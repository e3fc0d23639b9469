"""The one place for audit records: who did what to which job or session, and when.

An append-only SQLite table under ``AIFACTORY_HOME/hub``. The spawner writes session events;
later issues (allocations, sharing, scaling) write theirs here too. ``workbench audit`` reads it.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    details TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class AuditRecord:
    at: str
    actor: str
    action: str
    subject: str
    details: dict


class AuditLog:
    """``record()`` appends; ``records()`` reads back, newest last."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10)
        conn.execute(_SCHEMA)
        return conn

    def record(self, actor: str, action: str, subject: str, **details) -> AuditRecord:
        rec = AuditRecord(datetime.now(UTC).isoformat(timespec="seconds"),
                          actor, action, subject, details)
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO audit (at, actor, action, subject, details) VALUES (?, ?, ?, ?, ?)",
                (rec.at, actor, action, subject, json.dumps(details, sort_keys=True, default=str)),
            )
        return rec

    def records(self, action: str | None = None, actor: str | None = None,
                limit: int = 1000) -> list[AuditRecord]:
        sql = "SELECT at, actor, action, subject, details FROM audit"
        where, args = [], []
        if action:
            where.append("action = ?")
            args.append(action)
        if actor:
            where.append("actor = ?")
            args.append(actor)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        with self._connect() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [AuditRecord(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in reversed(rows)]
