"""The help requests and their time boxes, durable in a database: a SQLite file
(``AIFACTORY_HOME/hub/help.sqlite``, the demo's) or a site's PostgreSQL, through
:mod:`workbench.db` as the audit store is. The table is ``help_requests``.

A request is *open* from the moment it is asked until it is closed (by its owner or support),
expires (its ``expires_at`` passed) or is revoked (the shares went away on the hub, or the
server stopped). Only open requests hold shares (one per support engineer who joined); at
most one is open per server (a unique index on the open ones). The expiry
lives here, not in a process: a service that restarts finds what expired while it was down
(:meth:`HelpStore.due`) and revokes it before it serves anything.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from urllib.parse import unquote

from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from workbench import db

#: how long support may have access, in minutes: the form's range and its default
MIN_MINUTES, MAX_MINUTES, DEFAULT_MINUTES = 30, 480, 120
#: the most characters of a message and of a notebook path, and of one name in that path
MAX_MESSAGE, MAX_NOTEBOOK, MAX_NAME = 4000, 1024, 255
#: the largest request id: the ``id`` column is a 32-bit integer on PostgreSQL
MAX_ID = 2**31 - 1

# The layout the store had as a plain SQLite file, so files written before stay readable:
# times are ISO text (UTC), ``job`` a JSON object, ``joined`` a JSON list.
_metadata = MetaData()
_table = Table(
    "help_requests", _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("owner", Text, nullable=False),
    Column("server", Text, nullable=False),
    Column("helper", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("notebook", Text, nullable=False),
    Column("minutes", Integer, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("expires_at", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("ended_at", Text),
    Column("ended_by", Text),
    Column("job", Text, nullable=False),
    Column("joined", Text, nullable=False),
    sqlite_autoincrement=True,
)
_t = _table.c
_open = _t.state == "open"
Index("one_open_per_server", _t.owner, _t.server, unique=True,
      sqlite_where=_open, postgresql_where=_open)


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


def check_notebook(value) -> str:
    """A notebook path inside the owner's server, or a 400 naming ``notebook``: relative,
    names joined by '/', none of them empty, '.' or '..' (also once percent-decoded, however
    often), no backslash, no control character, each name at most ``MAX_NAME`` characters.
    Support's Join opens it in JupyterLab, so nothing else may reach that link."""
    notebook = check_text("notebook", value, MAX_NOTEBOOK)
    if not notebook:
        return ""
    seen, text = set(), notebook
    while text not in seen:  # every percent-decoding of it, until it stops changing
        seen.add(text)
        text = unquote(text)
    for text in seen:
        why = _not_a_path(text)
        if why:
            raise HelpError(400, f"notebook must be a path in your server's file browser, "
                                 f"like work/train.ipynb: {why}")
    return notebook


def _not_a_path(text: str) -> str | None:
    if "\\" in text:
        return "it holds a backslash"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text):
        return "it holds a control character"
    if text.startswith("/"):
        return "it starts with '/' (give it relative to your home)"
    names = text.split("/")
    if any(name in ("", ".", "..") for name in names):
        return "it holds an empty, '.' or '..' name"
    if any(len(name) > MAX_NAME for name in names):
        return f"a name in it is over {MAX_NAME} characters"
    return None


class HelpStore(db.Store):
    """The help requests in a database; every method runs its own short transaction.

    ``path_or_url``: a SQLite file or a SQLAlchemy URL (:func:`workbench.db.url_of`).
    """

    metadata = _metadata

    @staticmethod
    def _row(r) -> HelpRequest:
        return HelpRequest(
            id=r.id, owner=r.owner, server=r.server, helper=r.helper, message=r.message,
            notebook=r.notebook, minutes=r.minutes,
            created_at=datetime.fromisoformat(r.created_at),
            expires_at=datetime.fromisoformat(r.expires_at), state=State(r.state),
            ended_at=datetime.fromisoformat(r.ended_at) if r.ended_at else None,
            ended_by=r.ended_by, job=json.loads(r.job), joined=tuple(json.loads(r.joined)))

    def _select(self, *where) -> list[HelpRequest]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(_table).where(*where).order_by(_t.id)).all()
        return [self._row(r) for r in rows]

    def get(self, request_id: int) -> HelpRequest:
        if not 0 < request_id <= MAX_ID:  # the database would refuse it: none has this id
            raise HelpError(404, f"no help request {request_id}")
        found = self._select(_t.id == request_id)
        if not found:
            raise HelpError(404, f"no help request {request_id}")
        return found[0]

    def open_for(self, owner: str, server: str = "") -> HelpRequest | None:
        found = self._select(_t.owner == owner, _t.server == server, _open)
        return found[0] if found else None

    def of_owner(self, owner: str, limit: int = 20) -> list[HelpRequest]:
        return self._select(_t.owner == owner)[-limit:]

    def joined_by(self, who: str, limit: int = 20) -> list[HelpRequest]:
        """The latest requests ``who`` joined."""
        pattern = "%" + json.dumps(who) + "%"
        return [r for r in self._select(_t.joined.like(pattern))
                if who in r.joined][-limit:]

    def open_requests(self) -> list[HelpRequest]:
        return self._select(_open)

    def due(self, at: datetime | None = None) -> list[HelpRequest]:
        """Open requests whose time is up."""
        return self._select(_open, _t.expires_at <= _iso(at or now()))

    def add(self, owner: str, server: str, helper: str, message: str, notebook: str,
            minutes: int, job: dict) -> HelpRequest:
        """A new open request; a 409 if the server has one open already."""
        created = now()
        try:
            with self.engine.begin() as conn:
                result = conn.execute(insert(_table).values(
                    owner=owner, server=server, helper=helper, message=message,
                    notebook=notebook, minutes=minutes, created_at=_iso(created),
                    expires_at=_iso(created + timedelta(minutes=minutes)),
                    state=State.OPEN.value, job=json.dumps(job), joined="[]"))
                request_id = result.inserted_primary_key[0]
        except IntegrityError as e:
            raise HelpError(409, f"{owner}/{server} has an open help request already: "
                                 "stop sharing it first") from e
        return self.get(request_id)

    def set_expiry(self, request_id: int, minutes_from_now: int) -> HelpRequest:
        with self.engine.begin() as conn:
            conn.execute(update(_table).where(_t.id == request_id, _open).values(
                expires_at=_iso(now() + timedelta(minutes=minutes_from_now))))
        return self.get(request_id)

    @staticmethod
    def _locked(conn: Connection, request_id: int):
        """The row's ``joined`` and ``state``, no other writer changing them until ``conn``'s
        transaction ends (None: no such request)."""
        if conn.dialect.name == "sqlite":
            # no row locks: a first write takes the database's one write lock (another
            # writer waits for it), so the read below sees the latest joined list
            conn.execute(update(_table).where(_t.id == request_id).values(joined=_t.joined))
        return conn.execute(select(_t.joined, _t.state).where(_t.id == request_id)
                            .with_for_update()).first()

    def add_joined(self, request_id: int, who: str) -> HelpRequest:
        """Record that ``who`` joined; a 409 if they had already."""
        with self.engine.begin() as conn:
            row = self._locked(conn, request_id)
            if row is None:
                raise HelpError(404, f"no help request {request_id}")
            joined = json.loads(row.joined)
            if row.state != State.OPEN.value:
                raise HelpError(409, f"help request {request_id} is {row.state}")
            if who in joined:
                raise HelpError(409, f"{who} joined help request {request_id} already")
            conn.execute(update(_table).where(_t.id == request_id).values(
                joined=json.dumps([*joined, who])))
        return self.get(request_id)

    def remove_joined(self, request_id: int, who: str) -> None:
        """Undo :meth:`add_joined` (the hub refused the share)."""
        with self.engine.begin() as conn:
            row = self._locked(conn, request_id)
            if row:
                conn.execute(update(_table).where(_t.id == request_id).values(
                    joined=json.dumps([w for w in json.loads(row.joined) if w != who])))

    def end(self, request_id: int, state: State, by: str) -> HelpRequest | None:
        """Mark an open request ended; None if it was not open (someone else ended it)."""
        with self.engine.begin() as conn:
            changed = conn.execute(update(_table).where(_t.id == request_id, _open).values(
                state=state.value, ended_at=_iso(now()), ended_by=by)).rowcount
        return self.get(request_id) if changed else None
