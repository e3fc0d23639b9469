"""Saved presets of the spawn form: a user's named choices ("my usual: 2 h100, 4 h,
research-medai"), kept in the hub's own database (``c.JupyterHub.db_url``: the demo's SQLite
file or a site's PostgreSQL) in the table ``workbench_presets``, through :mod:`workbench.db`.

A preset's options are exactly the form's fields (:data:`workbench.resources.FIELDS`),
checked when saved by the one request check, :func:`workbench.resources.validate_request`,
and stored as that check returns them (every field filled in). The cluster changes after a
preset is saved, so whether it still *fits* is decided when it is read, against the live
cluster view (:func:`why_not`): a partition gone, a project no longer the user's or past its
validity, more GPUs than a node has, more GPU-hours than the project has left.

Every refusal is a :class:`PresetError` with an HTTP status and a message; nothing was
changed.
"""

from __future__ import annotations

import json
import unicodedata
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from . import db
from .resources import ClusterView, InvalidRequest, validate_request

#: the most characters of a preset's name, and the most presets a user keeps
MAX_NAME, MAX_PRESETS = 64, 50

_metadata = MetaData()
_table = Table(
    "workbench_presets", _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_name", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("options", Text, nullable=False),   # JSON object of the form's fields
    Column("created_at", Text, nullable=False),  # ISO, UTC
    Column("updated_at", Text, nullable=False),
    Column("last_used_at", Text),               # when a server last started from it
    sqlite_autoincrement=True,
)
_t = _table.c
Index("workbench_presets_user_name", _t.user_name, _t.name, unique=True)


class PresetError(Exception):
    """A refusal with an HTTP status and a message for the caller; nothing was changed."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _now(timespec: str = "seconds") -> str:
    return datetime.now(UTC).isoformat(timespec=timespec)


@dataclass(frozen=True)
class Preset:
    """One saved preset; ``options``: the form's fields as the request check returned them."""

    user: str
    name: str
    options: dict
    created_at: str
    updated_at: str
    last_used_at: str | None = None

    def to_json(self, why: str | None = None, last_used: bool = False) -> dict:
        """The API's form of it: ``fits`` and ``why`` (None: it fits) from :func:`why_not`."""
        return {"name": self.name, "options": self.options, "created_at": self.created_at,
                "updated_at": self.updated_at, "last_used_at": self.last_used_at,
                "last_used": last_used, "fits": why is None, "why": why}


def check_name(name) -> str:
    """A preset's name: 1 to :data:`MAX_NAME` characters, no control characters, no ``/``
    (it is a part of the preset's URL); surrounding spaces are dropped. A 400 otherwise."""
    if not isinstance(name, str):
        raise PresetError(400, "a preset's name must be a string")
    name = name.strip()
    if not name:
        raise PresetError(400, "a preset needs a name")
    if len(name) > MAX_NAME:
        raise PresetError(400, f"a preset's name is at most {MAX_NAME} characters; this one "
                               f"has {len(name)}")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise PresetError(400, "a preset's name cannot contain control characters "
                               "(tabs, new lines and the like)")
    if "/" in name:
        raise PresetError(400, "a preset's name cannot contain '/'")
    return name


def _memory(mb: int) -> str:
    return f"{mb // 1024}G" if mb % 1024 == 0 else f"{mb}M"


def check_options(options, view: ClusterView, default_partition: str = "gpu") -> dict:
    """``options`` checked by the spawn request's own check against ``view``, every field
    filled in as the form shows it; a 400 with the check's message otherwise (an unknown
    field included)."""
    if not isinstance(options, Mapping):
        raise PresetError(400, 'a preset\'s options must be an object of the form\'s fields '
                               '(partition, account, gpus, ...)')
    try:
        request = validate_request(options, view, default_partition)
    except InvalidRequest as e:
        raise PresetError(400, f"Invalid {e.field}: {e.message}") from None
    return {**request.as_options(), "memory": _memory(request.memory_mb)}


def why_not(options: Mapping, view: ClusterView, default_partition: str = "gpu",
            today: date | None = None) -> str | None:
    """Why a saved preset cannot be started on the cluster as ``view`` sees it now, in
    plain words; None when it fits."""
    partition, account = options.get("partition"), options.get("account")
    if partition not in view.partitions:
        offered = ", ".join(view.partitions) or "none"
        return (f"partition {partition} is no longer offered on this cluster (offered: "
                f"{offered}); choose another")
    if account not in view.accounts:
        yours = ", ".join(view.accounts) or "none"
        return (f"project {account} is no longer one of yours (yours: {yours}); choose "
                "another project")
    budget = view.budgets.get(account)
    if options.get("gpus") and budget is not None and getattr(budget, "active", True) is False:
        today = today or date.today()
        until = getattr(budget, "valid_until", None)
        since = getattr(budget, "valid_from", None)
        if until is not None and until < today:
            when = f"ended on {until.isoformat()}"
        elif since is not None and since > today:
            when = f"starts on {since.isoformat()}"
        else:
            when = "is outside its validity period"
        return (f"project {account}'s allocation {when}, so it has no GPU-hours; choose "
                "another project, or 0 GPUs")
    try:
        validate_request(options, view, default_partition)
    except InvalidRequest as e:
        return f"Invalid {e.field}: {e.message}"
    return None


class PresetStore(db.Store):
    """The presets of every user in a database; every method runs its own short
    transaction. ``path_or_url``: a SQLite file or a SQLAlchemy URL (the hub's ``db_url``).
    """

    metadata = _metadata

    @staticmethod
    def _row(r) -> Preset:
        return Preset(r.user_name, r.name, json.loads(r.options), r.created_at, r.updated_at,
                      r.last_used_at)

    def of_user(self, user: str) -> list[Preset]:
        """``user``'s presets by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(_table).where(_t.user_name == user)
                                .order_by(_t.name)).all()
        return [self._row(r) for r in rows]

    def get(self, user: str, name: str) -> Preset:
        with self.engine.connect() as conn:
            row = conn.execute(select(_table).where(_t.user_name == user,
                                                    _t.name == name)).first()
        if row is None:
            raise PresetError(404, f"{user} has no preset {name!r}")
        return self._row(row)

    @staticmethod
    def last_used(presets: list[Preset]) -> Preset | None:
        """The one a server last started from (None: none ever did)."""
        used = [p for p in presets if p.last_used_at]
        return max(used, key=lambda p: p.last_used_at) if used else None

    @staticmethod
    def _lock_user(conn: Connection, user: str) -> None:
        """No other writer changes ``user``'s presets until ``conn``'s transaction ends, so
        the count of presets and the names taken stay true while they are checked."""
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"),
                         {"a": 0x7072, "b": zlib.crc32(user.encode()) - 2**31})
        else:  # SQLite: a first write takes the database's one write lock
            conn.execute(update(_table).where(_t.user_name == user)
                         .values(user_name=_t.user_name))

    def put(self, user: str, name: str, options: dict) -> Preset:
        """Create ``user``'s preset ``name`` or replace its options (``options``: already
        checked by :func:`check_options`); a 400 past :data:`MAX_PRESETS`."""
        name = check_name(name)
        stamp = _now()
        with self.engine.begin() as conn:
            self._lock_user(conn, user)
            changed = conn.execute(update(_table).where(
                _t.user_name == user, _t.name == name).values(
                options=json.dumps(options), updated_at=stamp)).rowcount
            if not changed:
                count = conn.execute(select(func.count()).select_from(_table)
                                     .where(_t.user_name == user)).scalar_one()
                if count >= MAX_PRESETS:
                    raise PresetError(400, f"{user} has {count} presets, the most one may "
                                           "keep; delete one first")
                conn.execute(insert(_table).values(
                    user_name=user, name=name, options=json.dumps(options),
                    created_at=stamp, updated_at=stamp))
        return self.get(user, name)

    def rename(self, user: str, name: str, new_name: str) -> Preset:
        """Give ``user``'s preset ``name`` the name ``new_name``; 404 if there is no such
        preset, 409 if ``new_name`` is taken by another."""
        new_name = check_name(new_name)
        if new_name == name:
            return self.get(user, name)
        try:
            with self.engine.begin() as conn:
                self._lock_user(conn, user)
                changed = conn.execute(update(_table).where(
                    _t.user_name == user, _t.name == name).values(
                    name=new_name, updated_at=_now())).rowcount
                if not changed:
                    raise PresetError(404, f"{user} has no preset {name!r}")
        except IntegrityError as e:
            raise PresetError(409, f"{user} has a preset {new_name!r} already; choose "
                                   "another name, or delete that one first") from e
        return self.get(user, new_name)

    def delete(self, user: str, name: str) -> None:
        """Delete ``user``'s preset ``name``; 404 if there is none."""
        with self.engine.begin() as conn:
            gone = conn.execute(delete(_table).where(_t.user_name == user,
                                                     _t.name == name)).rowcount
        if not gone:
            raise PresetError(404, f"{user} has no preset {name!r}")

    def mark_used(self, user: str, name: str) -> bool:
        """Record that a server of ``user`` started from ``name`` now; False if there is no
        such preset (deleted meanwhile)."""
        with self.engine.begin() as conn:
            return bool(conn.execute(update(_table).where(
                _t.user_name == user, _t.name == name).values(
                last_used_at=_now("microseconds"))).rowcount)
