"""The help requests and their time boxes, durable in SQLite (``AIFACTORY_HOME/hub/help.sqlite``).

A request is *open* from the moment it is asked until it is closed (by its owner or support),
expires (its ``expires_at`` passed) or is revoked (the shares went away on the hub, or the
server stopped). Only open requests hold shares (one per support engineer who joined); at
most one is open per server. The expiry
lives here, not in a process: a service that restarts finds what expired while it was down
(:meth:`HelpStore.due`) and revokes it before it serves anything.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

#: how long support may have access, in minutes: the form's range and its default
MIN_MINUTES, MAX_MINUTES, DEFAULT_MINUTES = 30, 480, 120
#: the most characters of a message and of a notebook path
MAX_MESSAGE, MAX_NOTEBOOK = 4000, 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS help_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    server TEXT NOT NULL,
    helper TEXT NOT NULL,
    message TEXT NOT NULL,
    notebook TEXT NOT NULL,
    minutes INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    state TEXT NOT NULL,
    ended_at TEXT,
    ended_by TEXT,
    job TEXT NOT NULL,
    joined TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_open_per_server
    ON help_requests (owner, server) WHERE state = 'open';
"""


class State(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    EXPIRED = "expired"
    REVOKED = "revoked"


class HelpError(Exception):
    """A refusal with an HTTP status and a message for the caller; nothing was changed."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


@dataclass(frozen=True)
class HelpRequest:
    """One help request. ``helper``: whom it is addressed to (``group:support``): any of
    them may join; ``job``: the Slurm job behind the server when it was asked (id, node,
    partition, GPUs); ``joined``: who joined (each holds a share of the server), in order."""

    id: int
    owner: str
    server: str
    helper: str
    message: str
    notebook: str
    minutes: int
    created_at: datetime
    expires_at: datetime
    state: State
    ended_at: datetime | None = None
    ended_by: str | None = None
    job: dict = field(default_factory=dict)
    joined: tuple[str, ...] = ()

    @property
    def subject(self) -> str:
        """The server, as the audit log names it: ``alice/`` or ``alice/gpu-run``."""
        return f"{self.owner}/{self.server}"

    @property
    def is_open(self) -> bool:
        return self.state is State.OPEN

    def seconds_left(self, at: datetime | None = None) -> int:
        return max(0, int((self.expires_at - (at or now())).total_seconds()))

    def to_json(self) -> dict:
        kind, _, name = self.helper.partition(":")
        return {
            "id": self.id, "owner": self.owner, "server": self.server,
            "helper": {"kind": kind, "name": name}, "message": self.message,
            "notebook": self.notebook, "minutes": self.minutes,
            "created_at": _iso(self.created_at), "expires_at": _iso(self.expires_at),
            "seconds_left": self.seconds_left() if self.is_open else 0,
            "state": self.state.value,
            "ended_at": _iso(self.ended_at) if self.ended_at else None,
            "ended_by": self.ended_by, "job": self.job, "joined": list(self.joined),
        }


def check_minutes(value, low: int = MIN_MINUTES, high: int = MAX_MINUTES) -> int:
    """``value`` as whole minutes within ``[low, high]``, or a 400 saying what is allowed."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise HelpError(400, f"minutes must be a whole number from {low} to {high}, "
                             f"not {value!r}")
    if not low <= value <= high:
        raise HelpError(400, f"minutes must be from {low} to {high} "
                             f"({low // 60 or low} {'h' if low >= 60 else 'min'} to "
                             f"{high // 60} h), not {value}")
    return value


def check_text(name: str, value, limit: int) -> str:
    """A string of at most ``limit`` characters, or a 400."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise HelpError(400, f"{name} must be a string")
    if len(value) > limit:
        raise HelpError(400, f"{name} is {len(value)} characters long; at most {limit}")
    return value.strip()


class HelpStore:
    """The help requests in SQLite; every method opens its own short transaction."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10)
        conn.executescript(_SCHEMA)
        return conn

    @staticmethod
    def _row(r) -> HelpRequest:
        return HelpRequest(
            id=r[0], owner=r[1], server=r[2], helper=r[3], message=r[4], notebook=r[5],
            minutes=r[6], created_at=datetime.fromisoformat(r[7]),
            expires_at=datetime.fromisoformat(r[8]), state=State(r[9]),
            ended_at=datetime.fromisoformat(r[10]) if r[10] else None, ended_by=r[11],
            job=json.loads(r[12]), joined=tuple(json.loads(r[13])))

    def _select(self, where: str = "", args: tuple = ()) -> list[HelpRequest]:
        with self._connect() as conn:
            rows = conn.execute(f"SELECT * FROM help_requests {where} ORDER BY id", args)
            return [self._row(r) for r in rows.fetchall()]

    def get(self, request_id: int) -> HelpRequest:
        found = self._select("WHERE id = ?", (request_id,))
        if not found:
            raise HelpError(404, f"no help request {request_id}")
        return found[0]

    def open_for(self, owner: str, server: str = "") -> HelpRequest | None:
        found = self._select("WHERE owner = ? AND server = ? AND state = 'open'", (owner, server))
        return found[0] if found else None

    def of_owner(self, owner: str, limit: int = 20) -> list[HelpRequest]:
        return self._select("WHERE owner = ?", (owner,))[-limit:]

    def joined_by(self, who: str, limit: int = 20) -> list[HelpRequest]:
        """The latest requests ``who`` joined."""
        pattern = "%" + json.dumps(who) + "%"
        return [r for r in self._select("WHERE joined LIKE ?", (pattern,))
                if who in r.joined][-limit:]

    def open_requests(self) -> list[HelpRequest]:
        return self._select("WHERE state = 'open'")

    def due(self, at: datetime | None = None) -> list[HelpRequest]:
        """Open requests whose time is up."""
        return self._select("WHERE state = 'open' AND expires_at <= ?", (_iso(at or now()),))

    def add(self, owner: str, server: str, helper: str, message: str, notebook: str,
            minutes: int, job: dict) -> HelpRequest:
        """A new open request; a 409 if the server has one open already."""
        created = now()
        try:
            with self._connect() as conn:
                cur = conn.execute(
                    "INSERT INTO help_requests (owner, server, helper, message, notebook, "
                    "minutes, created_at, expires_at, state, job, joined) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, '[]')",
                    (owner, server, helper, message, notebook, minutes, _iso(created),
                     _iso(created + timedelta(minutes=minutes)), json.dumps(job)))
                request_id = cur.lastrowid
        except sqlite3.IntegrityError as e:
            raise HelpError(409, f"{owner}/{server} has an open help request already: "
                                 "stop sharing it first") from e
        return self.get(request_id)

    def set_expiry(self, request_id: int, minutes_from_now: int) -> HelpRequest:
        with self._connect() as conn:
            conn.execute("UPDATE help_requests SET expires_at = ? WHERE id = ? AND state = 'open'",
                         (_iso(now() + timedelta(minutes=minutes_from_now)), request_id))
        return self.get(request_id)

    def add_joined(self, request_id: int, who: str) -> HelpRequest:
        """Record that ``who`` joined; a 409 if they had already."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT joined, state FROM help_requests WHERE id = ?",
                               (request_id,)).fetchone()
            if row is None:
                raise HelpError(404, f"no help request {request_id}")
            joined = json.loads(row[0])
            if row[1] != "open":
                raise HelpError(409, f"help request {request_id} is {row[1]}")
            if who in joined:
                raise HelpError(409, f"{who} joined help request {request_id} already")
            conn.execute("UPDATE help_requests SET joined = ? WHERE id = ?",
                         (json.dumps([*joined, who]), request_id))
        return self.get(request_id)

    def remove_joined(self, request_id: int, who: str) -> None:
        """Undo :meth:`add_joined` (the hub refused the share)."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT joined FROM help_requests WHERE id = ?",
                               (request_id,)).fetchone()
            if row:
                conn.execute("UPDATE help_requests SET joined = ? WHERE id = ?",
                             (json.dumps([w for w in json.loads(row[0]) if w != who]),
                              request_id))

    def end(self, request_id: int, state: State, by: str) -> HelpRequest | None:
        """Mark an open request ended; None if it was not open (someone else ended it)."""
        with self._connect() as conn:
            cur = conn.execute(
                "UPDATE help_requests SET state = ?, ended_at = ?, ended_by = ? "
                "WHERE id = ? AND state = 'open'",
                (state.value, _iso(now()), by, request_id))
            changed = cur.rowcount
        return self.get(request_id) if changed else None
