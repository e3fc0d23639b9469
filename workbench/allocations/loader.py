"""Reading the allocations file: every check, each error naming ``file:line``.

The whole file is checked before anything is applied; :func:`load` raises
:class:`AllocationError` at the first fault. With the live nodes it also checks the file
against the machine: shares within its GPU-hours, reservations within the cluster and within
their programme's share, grants within their programme's share.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import pwd
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import yaml

from .. import linedyaml
from ..linedyaml import Lined, LinedList
from ..paths import FactoryHome, database_made
from ..slurm.models import Node
from .guards import MAX_RESERVING, is_guard_name
from .model import Allocations, Award, Period, Programme, Project, Reserve, gpu_totals
from .shares import check_shares, parse_share

_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
#: ``period: current-year``: the calendar year the file is read in (the demo's period)
CURRENT_YEAR = "current-year"
_TOP_KEYS = {"period", "programmes"}
_PROGRAMME_KEYS = {"description", "share", "reserved_gpus", "projects"}
_PROJECT_KEYS = {"members", "gpu_hours", "valid_from", "valid_until", "description"}
#: ``load(awards=IN_FORCE)``: the awards of the home's merit database when the file read is
#: the one in force (:func:`default_path`), none with any other file
IN_FORCE = None


class AllocationError(ValueError):
    """The allocations file is wrong; nothing was applied."""




def default_path(home: FactoryHome | None = None) -> Path:
    """The allocations in force (:meth:`~workbench.paths.FactoryHome.config_file`)."""
    return (home or FactoryHome.from_env()).config_file("allocations.yaml")


class AllocationsCache:
    """The allocations file read once per version: :meth:`get` answers the same
    :class:`Allocations` object while the file's (mtime_ns, size, inode) stay the same, and
    reads it again at the first call after an edit or an atomic replace. A file written less
    than :attr:`RACY_NS` before it was read could change again without its mtime moving (the
    file system's clock ticks coarsely), so until then its bytes are compared as well. A
    file that became unusable is read again at every call and raises its
    :class:`AllocationError` until it is fixed (the last good value is not served instead).
    Safe between threads; one read at a time."""

    RACY_NS = 1_000_000_000

    def __init__(self):
        self._lock = threading.Lock()
        # (path, check_users) -> [stat key, when read (ns), the bytes read, what they said]
        self._entries: dict[tuple[Path, bool], list] = {}

    def get(self, path: Path | None = None, check_users: bool = False) -> Allocations:
        path = Path(path) if path else default_path()
        with self._lock:
            entry = self._entries.pop((path, check_users), None)
            try:
                st = path.stat()
                # the year too: a `period: current-year` turns with it; and the awards' count
                # and latest id when the file is the one in force (an award is read at once)
                key = (st.st_mtime_ns, st.st_size, st.st_ino, dt.date.today().year,
                       _awards_version(path))
                if entry is not None and entry[0] == key and \
                        (st.st_mtime_ns + self.RACY_NS < entry[1] or
                         self._same_bytes(path, entry)):
                    self._entries[(path, check_users)] = entry
                    return entry[3]
                read_at, raw = time.time_ns(), path.read_bytes()
            except OSError:
                return load(path, check_users=check_users)  # raises its AllocationError
            allocs = load(path, check_users=check_users)  # may raise: then nothing is kept
            self._entries[(path, check_users)] = [key, read_at, raw, allocs]
            return allocs

    @staticmethod
    def _same_bytes(path: Path, entry: list) -> bool:
        read_at = time.time_ns()
        if path.read_bytes() != entry[2]:
            return False
        entry[1] = read_at
        return True


_cache = AllocationsCache()


def cached(path: Path | None = None, check_users: bool = False) -> Allocations:
    """The allocations file through the process's one :class:`AllocationsCache`: the same
    object while the file is unchanged, read again after it changes; raises
    :class:`AllocationError` while it is unusable. Every reader that asks more than once
    (the spawn form, the queue's words, the catalogue, the dashboards) asks here."""
    return _cache.get(path, check_users)


def current(path: Path | None = None) -> Allocations | None:
    """:func:`cached`, or None while the file is unusable (for the queue's pending-reason
    words, asked every second while a spawn waits)."""
    try:
        return cached(path)
    except AllocationError:
        return None


def _awards_version(path: Path) -> tuple[int, int] | None:
    return _read_awards(path, "version", None)


def _in_force(path: Path) -> bool:
    return path.resolve() == default_path().resolve()


def awards_in_force(path: Path) -> list[Award]:
    """The awards read with ``path``: the merit database's when ``path`` is the allocations
    file in force, else none."""
    return _read_awards(path, "awards", [])


def _read_awards(path: Path, what: str, none):
    """The award store's ``what`` (``awards``, ``version``) when ``path`` is the file in
    force and the store is there to read (a user's own processes cannot read the hub's
    database: ``none`` there); its database unreachable or broken: the allocations are
    unusable (an :class:`AllocationError`), as with a file that cannot be read. SQLAlchemy
    is imported only here, when a store is there."""
    if not _in_force(path) or not database_made(FactoryHome.from_env().merit_db):
        return none
    from sqlalchemy.exc import SQLAlchemyError

    from .awards import AwardStore
    store = AwardStore(FactoryHome.from_env().merit_db)
    try:
        return getattr(store, what)()
    except SQLAlchemyError as e:
        raise AllocationError(f"the awards of merit review cannot be read: "
                              f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from e


class _Checker:
    def __init__(self, path: Path):
        self.path = path

    def fail(self, where, key, message):
        if isinstance(where, Award):  # a grant from the database: named by award and proposal
            raise AllocationError(f"{where.origin} (proposal {where.proposal}): {message}")
        line = where.line_of(key) if isinstance(where, (Lined, LinedList)) else "?"
        if isinstance(line, int) and line < 1:
            line = 1
        raise AllocationError(f"{self.path}:{line}: {message}")


def load(path: Path | None = None, check_users: bool = True,
         nodes: Iterable[Node] | None = None, today: dt.date | None = None,
         awards: Iterable[Award] | None = IN_FORCE) -> Allocations:
    """Read and check the allocations file (see :mod:`workbench.allocations`) and the awards
    of merit review (:mod:`.awards`: by default those in force, when ``path`` is the file in
    force; checked like the file's projects, each error naming the award); ``today``: the
    day whose year ``period: current-year`` is (default: today)."""
    path = Path(path) if path else default_path()
    awards = list(awards_in_force(path) if awards is IN_FORCE else awards)
    try:
        raw = linedyaml.load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise AllocationError(f"{path}: cannot read: {e}") from e
    c = _Checker(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("programmes"), dict):
        raise AllocationError(f"{path}:1: expected a top-level 'programmes:' mapping")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        key = sorted(unknown, key=str)[0]
        c.fail(raw, key, f"unknown key {key!r}; allowed: {', '.join(sorted(_TOP_KEYS))}")
    period = _period(c, raw, today or dt.date.today())
    totals = gpu_totals(nodes) if nodes is not None else None
    progs_raw = raw["programmes"]
    seen: set[str] = set()
    programmes = []
    grant_lines: dict[str, tuple] = {}  # project -> where its grant was written
    for pname, pspec in progs_raw.items():
        if pspec is None:
            pspec = Lined({}, {}, progs_raw.line_of(pname))
        if not isinstance(pspec, dict):
            c.fail(progs_raw, pname, f"programme {pname!r} must be a mapping")
        _check_name(c, progs_raw, pname, seen, "programme")
        unknown = set(pspec) - _PROGRAMME_KEYS
        if unknown:
            key = sorted(unknown, key=str)[0]
            c.fail(pspec, key, f"programme {pname}: unknown key {key!r}; "
                   f"allowed: {', '.join(sorted(_PROGRAMME_KEYS))}")
        share = parse_share(c, pspec, pname, totals) if pspec.get("share") is not None else None
        if share is not None and period is None:
            c.fail(pspec, "share", f"programme {pname}: a share needs the allocation period "
                   "it is measured over (top-level 'period: {start: ..., end: ...}')")
        reserves = _reserves(c, pspec, pname, totals)
        projects = []
        projs_raw = _projects_raw(c, pspec, pname)
        for name, spec in projs_raw.items():
            project, where = _project(c, projs_raw, name, spec, pname, seen, check_users)
            projects.append(project)
            grant_lines[name] = (where, "gpu_hours")
        programmes.append(Programme(pname, pspec.get("description") or "", tuple(projects),
                                    reserves, share, pspec.line_of("reserved_gpus")))
    if awards:
        programmes = _with_awards(c, programmes, awards, seen, check_users, grant_lines)
    allocs = Allocations(tuple(programmes), path, period)
    _check_reservations(c, allocs, progs_raw, totals)
    if totals is not None and period is not None:
        check_shares(c, allocs, progs_raw, totals, grant_lines)
    return allocs


def _period(c: _Checker, raw, today: dt.date) -> Period | None:
    spec = raw.get("period")
    if spec is None:
        return None
    if spec == CURRENT_YEAR:
        return Period.current_year(today)
    if not isinstance(spec, dict) or set(spec) != {"start", "end"}:
        c.fail(raw, "period", "period must be a mapping {start: 2026-01-01, end: 2026-12-31}")
    for key in ("start", "end"):
        if not isinstance(spec[key], dt.date):
            c.fail(spec, key, f"period {key} must be a date like 2026-01-31")
    if spec["end"] < spec["start"]:
        c.fail(spec, "end", "the period ends before it starts")
    return Period(spec["start"], spec["end"])


def _reserves(c: _Checker, pspec, pname: str, totals) -> tuple[Reserve, ...]:
    """``{h100: 2, a100: 1}``, ``{gpu_type: h100, count: 2}`` or a list of the latter."""
    raw = pspec.get("reserved_gpus")
    if raw is None:
        return ()
    usage = (f"programme {pname}: reserved_gpus needs a count per GPU type ({{h100: 2}}) or "
             "gpu_type (a GPU type) and count (a whole number >= 1)")
    items = []  # (where, key, gpu_type, count)
    if isinstance(raw, dict) and ("gpu_type" in raw or "count" in raw):
        extra = set(raw) - {"gpu_type", "count"}
        if extra:
            key = sorted(extra, key=str)[0]
            c.fail(raw, key, f"programme {pname}: reserved_gpus mixes two ways of reserving "
                   f"(gpu_type/count and {key}: ...); write one")
        items.append((pspec, "reserved_gpus", raw.get("gpu_type"), raw.get("count")))
    elif isinstance(raw, dict):
        items += [(raw, t, t, n) for t, n in raw.items()]
    elif isinstance(raw, list) and raw:
        for i, r in enumerate(raw):
            if not isinstance(r, dict) or set(r) != {"gpu_type", "count"}:
                c.fail(raw, i, usage)
            items.append((raw, i, r["gpu_type"], r["count"]))
    else:
        c.fail(pspec, "reserved_gpus", usage)
    out: dict[str, Reserve] = {}
    for where, key, gpu_type, count in items:
        if not isinstance(gpu_type, str) or isinstance(count, bool) or \
                not isinstance(count, int) or count < 1:
            c.fail(where, key, usage)
        if gpu_type in out:
            c.fail(where, key, f"programme {pname}: reserves {gpu_type} twice "
                   f"({out[gpu_type].count} and {count}); reserve each GPU type once")
        if totals is not None and gpu_type not in totals:
            c.fail(where, key, f"programme {pname}: reserves {gpu_type} GPUs, which the "
                   f"cluster lacks (it has {', '.join(sorted(totals)) or 'no GPUs'})")
        out[gpu_type] = Reserve(gpu_type, count)
    return tuple(out.values())


def _projects_raw(c: _Checker, pspec, pname: str):
    projs_raw = pspec.get("projects") or Lined({}, {}, pspec.line)
    if not isinstance(projs_raw, dict):
        c.fail(pspec, "projects", f"programme {pname}: projects must be a mapping")
    return projs_raw


def _project(c: _Checker, projs_raw, name, spec, pname, seen, check_users):
    """The project and the mapping it was written in."""
    spec = spec if spec is not None else Lined({}, {}, projs_raw.line_of(name))
    if not isinstance(spec, dict):
        c.fail(projs_raw, name, f"project {name!r} must be a mapping")
    _check_name(c, projs_raw, name, seen, f"project of {pname}")
    unknown = set(spec) - _PROJECT_KEYS
    if unknown:
        key = sorted(unknown, key=str)[0]
        c.fail(spec, key, f"project {name}: unknown key {key!r}; "
               f"allowed: {', '.join(sorted(_PROJECT_KEYS))}")
    hours = spec.get("gpu_hours", 0)
    if isinstance(hours, bool) or not isinstance(hours, (int, float)) or \
            not 0 <= hours < math.inf:  # .nan and .inf are YAML floats too
        c.fail(spec, "gpu_hours", f"project {name}: gpu_hours must be a number >= 0, "
               f"not {hours!r}")
    members = spec.get("members") or []
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        c.fail(spec, "members", f"project {name}: members must be a list of users")
    for m in members:
        if check_users and not _is_user(m):
            c.fail(spec, "members", f"project {name}: member {m!r} is no user of this machine")
    dates = {}
    for key in ("valid_from", "valid_until"):
        value = spec.get(key)
        if value is not None and not isinstance(value, dt.date):
            c.fail(spec, key, f"project {name}: {key} must be a date like 2026-01-31")
        dates[key] = value
    if dates["valid_from"] and dates["valid_until"] and \
            dates["valid_until"] < dates["valid_from"]:
        c.fail(spec, "valid_until", f"project {name}: valid_until is before valid_from")
    return Project(name, pname, tuple(members), float(hours), **dates), spec


def _with_awards(c: _Checker, programmes: list[Programme], awards: list[Award], seen,
                 check_users: bool, grant_lines: dict) -> list[Programme]:
    """The file's programmes with the awarded projects added, each checked as a project of
    the file is (its name, its programme, its members, its dates)."""
    names = {p.name for p in programmes}
    extra: dict[str, list[Project]] = {}
    for award in awards:
        g = award.as_project()
        if g.programme not in names:
            c.fail(award, "programme", f"project {g.name}: programme {g.programme!r} is not "
                   f"in the allocations file ({', '.join(sorted(names))})")
        _check_name(c, award, g.name, seen, f"project of {g.programme}")
        if not 0 <= g.gpu_hours < math.inf:
            c.fail(award, "gpu_hours", f"project {g.name}: gpu_hours must be a number >= 0, "
                   f"not {g.gpu_hours!r}")
        for m in g.members:
            if check_users and not _is_user(m):
                c.fail(award, "members", f"project {g.name}: member {m!r} is no user of "
                       "this machine")
        if g.valid_from and g.valid_until and g.valid_until < g.valid_from:
            c.fail(award, "valid_until", f"project {g.name}: valid_until is before "
                   "valid_from")
        extra.setdefault(g.programme, []).append(g)
        grant_lines[g.name] = (award, "gpu_hours")
    return [dataclasses.replace(p, projects=(*p.projects, *extra.get(p.name, ())))
            for p in programmes]


def _check_reservations(c: _Checker, allocs: Allocations, progs_raw, totals) -> None:
    reserving = allocs.reserving
    if len(reserving) > MAX_RESERVING:
        third = reserving[MAX_RESERVING]
        c.fail(progs_raw[third.name], "reserved_gpus",
               f"programme {third.name}: at most {MAX_RESERVING} programmes may reserve GPUs "
               f"({', '.join(p.name for p in reserving[:MAX_RESERVING])} already do); the "
               "guarantee uses one account subtree and one QOS (see the README)")
    types = {}
    for prog in reserving:
        for r in prog.reserves:
            types.setdefault(r.gpu_type, prog.name)
            if len(types) > 1:
                first = next(iter(types))
                c.fail(progs_raw[prog.name], "reserved_gpus",
                       f"programme {prog.name}: reserves {r.gpu_type}, but {types[first]} "
                       f"reserves {first}: all reservations must be of one GPU type, the one "
                       "Slurm's billing counts (see the README)")
    if totals is None:
        return
    so_far: dict[str, int] = {}
    for prog in reserving:
        for r in prog.reserves:
            so_far[r.gpu_type] = so_far.get(r.gpu_type, 0) + r.count
            if so_far[r.gpu_type] >= totals.get(r.gpu_type, 0):
                c.fail(progs_raw[prog.name], "reserved_gpus",
                       f"programme {prog.name}: reserves {so_far[r.gpu_type]} {r.gpu_type} "
                       f"GPUs in all, but the cluster has {totals.get(r.gpu_type, 0)}; leave "
                       "some for the others")


def _is_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _check_name(c: _Checker, where, name, seen, what) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        c.fail(where, name, f"{what} name {name!r} must be lower-case letters, digits, '-' or "
               "'_'")
    if name == "root" or is_guard_name(name):
        c.fail(where, name, f"{what} name {name!r} is kept for the reservations' Slurm "
               "accounts (root, guard-*, unreserved); choose another")
    if name in seen:
        c.fail(where, name, f"{what} name {name!r} is used twice")
    seen.add(name)
