"""Programmes, projects, GPU-hour grants and reserved shares: one file, applied to Slurm.

The allocations file (YAML; the demo's is ``cluster/allocations.yaml``)::

    programmes:
      startups:                        # a programme: a Slurm account under root
        description: Start-up programme
        reserved_gpus:                 # optional: GPUs only this programme may use
          gpu_type: h100               #   the GPU type (the cap counts that type cluster-wide)
          count: 2
        projects:
          startup-helios:              # a project: a Slurm account under its programme
            members: [alice]           #   Unix users; each gets an association
            gpu_hours: 500             #   the grant, enforced as GrpTRESMins=gres/gpu=30000
            valid_from: 2026-01-01     #   optional; outside the period the grant is 0
            valid_until: 2027-12-31

:func:`load` checks the whole file first (unknown users, negative grants, names used twice,
shares larger than the cluster) and names the line at fault; :func:`plan` compares it with
Slurm and lists the changes; :func:`apply_plan` makes them. Nothing is changed when the file
is wrong.

**The reserved share** is a QOS: every other programme's account runs under
``shared-<gpu_type>``, whose ``GrpTRES=gres/gpu:<type>=<total - reserved>`` caps what all of
them together may hold at once; the reserving programme's accounts run under ``normal``. So at
any moment at least ``count`` GPUs of that type are out of reach of the others, without pinning
nodes (a reservation would hold whole nodes and make every start-up job name it).
"""

from __future__ import annotations

import datetime as dt
import pwd
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .paths import FactoryHome, data_file
from .slurm import SlurmClient, queries
from .slurm.models import Node

_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_PROGRAMME_KEYS = {"description", "reserved_gpus", "projects"}
_PROJECT_KEYS = {"members", "gpu_hours", "valid_from", "valid_until", "description"}


class AllocationError(ValueError):
    """The allocations file is wrong; nothing was applied."""


@dataclass(frozen=True)
class Project:
    name: str
    programme: str
    members: tuple[str, ...]
    gpu_hours: float
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None

    def active(self, today: dt.date) -> bool:
        return ((self.valid_from is None or self.valid_from <= today) and
                (self.valid_until is None or today <= self.valid_until))

    def granted_minutes(self, today: dt.date) -> int:
        """The GPU-minutes Slurm enforces today: the grant inside its period, else 0."""
        return int(round(self.gpu_hours * 60)) if self.active(today) else 0


@dataclass(frozen=True)
class Reserve:
    gpu_type: str
    count: int


@dataclass(frozen=True)
class Programme:
    name: str
    description: str
    projects: tuple[Project, ...] = field(default_factory=tuple)
    reserved: Reserve | None = None


class _LineLoader(yaml.SafeLoader):
    """Keeps the line of every mapping key, so errors can name it."""


def _construct_mapping(loader, node):
    mapping = loader.construct_mapping(node, deep=True)
    lines = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in lines:
            raise yaml.constructor.ConstructorError(
                None, None, f"{key!r} is written twice (first on line {lines[key]})",
                key_node.start_mark)
        lines[key] = key_node.start_mark.line + 1
    return _Lined(mapping, lines, node.start_mark.line + 1)


class _Lined(dict):
    def __init__(self, mapping, lines, line):
        super().__init__(mapping)
        self.lines = lines
        self.line = line

    def line_of(self, key) -> int:
        return self.lines.get(key, self.line)


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def default_path(home: FactoryHome | None = None) -> Path:
    """The site's file (``AIFACTORY_HOME/etc/allocations.yaml``) if present, else the demo's."""
    site = (home or FactoryHome.from_env()).etc / "allocations.yaml"
    return site if site.exists() else data_file("cluster", "allocations.yaml")


@dataclass(frozen=True)
class Allocations:
    programmes: tuple[Programme, ...]
    path: Path | None = None

    @property
    def projects(self) -> list[Project]:
        return [p for prog in self.programmes for p in prog.projects]

    def project(self, name: str) -> Project | None:
        return next((p for p in self.projects if p.name == name), None)

    def projects_of(self, user: str) -> list[str]:
        return [p.name for p in self.projects if user in p.members]

    @classmethod
    def load(cls, path: Path | None = None, check_users: bool = True,
             nodes: Iterable[Node] | None = None) -> Allocations:
        """Read and check the file. ``nodes`` (live ``sinfo``) lets shares be checked too."""
        path = Path(path) if path else default_path()
        try:
            raw = yaml.load(path.read_text(), Loader=_LineLoader)  # noqa: S506 (safe loader)
        except (OSError, yaml.YAMLError) as e:
            raise AllocationError(f"{path}: cannot read: {e}") from e

        def fail(where, key, message):
            line = where.line_of(key) if isinstance(where, _Lined) else "?"
            raise AllocationError(f"{path}:{line}: {message}")

        if not isinstance(raw, dict) or not isinstance(raw.get("programmes"), dict):
            raise AllocationError(f"{path}:1: expected a top-level 'programmes:' mapping")
        progs_raw = raw["programmes"]
        seen: set[str] = set()
        programmes = []
        totals = _gpu_totals(nodes) if nodes is not None else None
        reserved_by_type: dict[str, int] = {}
        for pname, pspec in progs_raw.items():
            if pspec is None:
                pspec = _Lined({}, {}, progs_raw.line_of(pname))
            if not isinstance(pspec, dict):
                fail(progs_raw, pname, f"programme {pname!r} must be a mapping")
            _check_name(progs_raw, pname, seen, "programme", fail)
            unknown = set(pspec) - _PROGRAMME_KEYS
            if unknown:
                key = sorted(unknown)[0]
                fail(pspec, key, f"programme {pname}: unknown key {key!r}; "
                     f"allowed: {', '.join(sorted(_PROGRAMME_KEYS))}")
            reserve = None
            if pspec.get("reserved_gpus") is not None:
                r = pspec["reserved_gpus"]
                gpu_type, count = (r.get("gpu_type"), r.get("count")) if isinstance(r, dict) \
                    else (None, None)
                if not isinstance(gpu_type, str) or isinstance(count, bool) or \
                        not isinstance(count, int) or count < 1:
                    fail(pspec, "reserved_gpus", f"programme {pname}: reserved_gpus needs "
                         "gpu_type (a GPU type) and count (a whole number >= 1)")
                reserved_by_type[gpu_type] = reserved_by_type.get(gpu_type, 0) + count
                if totals is not None and reserved_by_type[gpu_type] >= totals.get(gpu_type, 0):
                    fail(pspec, "reserved_gpus",
                         f"programme {pname}: reserves {reserved_by_type[gpu_type]} "
                         f"{gpu_type} GPUs in all, but the cluster has "
                         f"{totals.get(gpu_type, 0)}; leave some for the others")
                reserve = Reserve(gpu_type, count)
            projects = []
            projs_raw = pspec.get("projects") or _Lined({}, {}, pspec.line)
            if not isinstance(projs_raw, dict):
                fail(pspec, "projects", f"programme {pname}: projects must be a mapping")
            for name, spec in projs_raw.items():
                spec = spec if spec is not None else _Lined({}, {}, projs_raw.line_of(name))
                if not isinstance(spec, dict):
                    fail(projs_raw, name, f"project {name!r} must be a mapping")
                _check_name(projs_raw, name, seen, f"project of {pname}", fail)
                unknown = set(spec) - _PROJECT_KEYS
                if unknown:
                    key = sorted(unknown)[0]
                    fail(spec, key, f"project {name}: unknown key {key!r}; "
                         f"allowed: {', '.join(sorted(_PROJECT_KEYS))}")
                hours = spec.get("gpu_hours", 0)
                if isinstance(hours, bool) or not isinstance(hours, (int, float)) or hours < 0:
                    fail(spec, "gpu_hours",
                         f"project {name}: gpu_hours must be a number >= 0, not {hours!r}")
                members = spec.get("members") or []
                if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                    fail(spec, "members", f"project {name}: members must be a list of users")
                for m in members:
                    if check_users and not _is_user(m):
                        fail(spec, "members",
                             f"project {name}: member {m!r} is no user of this machine")
                dates = {}
                for key in ("valid_from", "valid_until"):
                    value = spec.get(key)
                    if value is not None and not isinstance(value, dt.date):
                        fail(spec, key, f"project {name}: {key} must be a date like 2026-01-31")
                    dates[key] = value
                if dates["valid_from"] and dates["valid_until"] and \
                        dates["valid_until"] < dates["valid_from"]:
                    fail(spec, "valid_until", f"project {name}: valid_until is before valid_from")
                projects.append(Project(name, pname, tuple(members), float(hours), **dates))
            programmes.append(Programme(pname, pspec.get("description") or "", tuple(projects),
                                        reserve))
        return cls(tuple(programmes), path)


def _is_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _check_name(where, name, seen, what, fail) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        fail(where, name, f"{what} name {name!r} must be lower-case letters, digits, '-' or '_'")
    if name in seen:
        fail(where, name, f"{what} name {name!r} is used twice")
    seen.add(name)


def _gpu_totals(nodes: Iterable[Node]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for n in nodes:
        if n.gpu_type:
            totals[n.gpu_type] = totals.get(n.gpu_type, 0) + n.gpus
    return totals


def shared_qos_name(gpu_type: str) -> str:
    return f"shared-{gpu_type}"


# -- plan and apply --------------------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    """One sacctmgr call and what it means, in words."""

    summary: str
    args: tuple[str, ...]


def plan(allocs: Allocations, slurm: SlurmClient, cluster: str,
         today: dt.date | None = None) -> list[Change]:
    """The changes that make Slurm match ``allocs`` (empty when it already does)."""
    today = today or dt.date.today()
    rows = slurm.run(queries.sacctmgr_list(
        "association", "Account", "ParentName", "User", "GrpTRESMins", "QOS", "DefaultQOS",
        where=(f"cluster={cluster}",)))
    account_rows = {r[0]: r for r in rows if r[2] == ""}
    members = {(r[2], r[0]) for r in rows if r[2]}
    qos_rows = {r[0]: r for r in slurm.run(queries.sacctmgr_list("qos", "Name", "GrpTRES"))}
    nodes = slurm.run(queries.nodes())
    totals = _gpu_totals(nodes)
    changes: list[Change] = []

    # QOS for the reserved shares
    reserves = [(p, p.reserved) for p in allocs.programmes if p.reserved]
    capped: dict[str, str] = {}  # programme -> the QOS its accounts run under
    for prog, reserve in reserves:
        qos = shared_qos_name(reserve.gpu_type)
        limit = totals.get(reserve.gpu_type, 0) - sum(
            r.count for _, r in reserves if r.gpu_type == reserve.gpu_type)
        tres = f"gres/gpu:{reserve.gpu_type}={limit}"
        if qos not in qos_rows:
            changes.append(Change(f"added QOS {qos} (others share {limit} {reserve.gpu_type})",
                                  ("add", "qos", qos)))
        if qos not in qos_rows or qos_rows[qos][1] != tres:
            changes.append(Change(f"set QOS {qos} to at most {limit} {reserve.gpu_type} GPUs",
                                  ("modify", "qos", "where", f"name={qos}", "set",
                                   f"GrpTRES={tres}")))
        for other in allocs.programmes:
            if other.name != prog.name and not (other.reserved and
                                                other.reserved.gpu_type == reserve.gpu_type):
                capped[other.name] = qos

    for prog in allocs.programmes:
        if prog.name not in account_rows:
            changes.append(Change(
                f"added account {prog.name} under root",
                ("add", "account", prog.name, "parent=root", f"cluster={cluster}",
                 f"description={prog.description or prog.name}", "organization=root")))
        qos = capped.get(prog.name, "normal")
        current = account_rows.get(prog.name)
        if current is None or current[4] != qos or current[5] != qos:
            changes.append(Change(
                f"{prog.name} jobs run under QOS {qos}",
                ("modify", "account", "where", f"name={prog.name}", f"cluster={cluster}", "set",
                 f"QOS={qos}", f"DefaultQOS={qos}")))
        for proj in prog.projects:
            current = account_rows.get(proj.name)
            if current is None:
                changes.append(Change(
                    f"added account {proj.name} under {prog.name}",
                    ("add", "account", proj.name, f"parent={prog.name}", f"cluster={cluster}",
                     f"description={prog.name} project", f"organization={prog.name}")))
            elif current[1] != prog.name:
                changes.append(Change(
                    f"moved account {proj.name} under {prog.name}",
                    ("modify", "account", "where", f"name={proj.name}", f"cluster={cluster}",
                     "set", f"parent={prog.name}")))
            minutes = proj.granted_minutes(today)
            if current is None or current[3] != f"gres/gpu={minutes}":
                why = "" if proj.active(today) else " (outside its validity period)"
                changes.append(Change(
                    f"set {proj.name} grant to {minutes / 60:g} GPU-hours{why}",
                    ("modify", "account", "where", f"name={proj.name}", f"cluster={cluster}",
                     "set", f"GrpTRESMins=gres/gpu={minutes}")))
            for user in proj.members:
                if (user, proj.name) not in members:
                    changes.append(Change(
                        f"added {user} to {proj.name}",
                        ("add", "user", user, f"account={proj.name}", f"cluster={cluster}")))
            for user, account in sorted(members):
                if account == proj.name and user not in proj.members:
                    changes.append(Change(
                        f"removed {user} from {proj.name}",
                        ("delete", "user", "where", f"name={user}", f"account={proj.name}",
                         f"cluster={cluster}")))
    return changes


def apply_plan(changes: list[Change], slurm: SlurmClient) -> list[str]:
    for change in changes:
        slurm.run(queries.sacctmgr_modify(*change.args))
    return [c.summary for c in changes]


def apply(allocs: Allocations, slurm: SlurmClient, cluster: str,
          today: dt.date | None = None) -> list[str]:
    """Make Slurm match ``allocs``; returns the changes made (none the second time)."""
    return apply_plan(plan(allocs, slurm, cluster, today), slurm)


# -- usage ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProjectBudget:
    project: str
    programme: str
    members: tuple[str, ...]
    granted_hours: float
    used_hours: float
    valid_from: dt.date | None
    valid_until: dt.date | None
    active: bool

    @property
    def remaining_hours(self) -> float:
        return max(self.granted_hours - self.used_hours, 0.0) if self.active else 0.0

    def as_dict(self) -> dict:
        return {
            "project": self.project, "programme": self.programme, "members": list(self.members),
            "granted_gpu_hours": round(self.granted_hours, 4),
            "used_gpu_hours": round(self.used_hours, 4),
            "remaining_gpu_hours": round(self.remaining_hours, 4),
            "valid_from": self.valid_from.isoformat() if self.valid_from else None,
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            "active": self.active,
        }


def usage_query(allocs: Allocations):
    """One ``sacct`` for every project's GPU use since the earliest validity start."""
    starts = [p.valid_from for p in allocs.projects if p.valid_from]
    since = min(starts) if starts else dt.date(2000, 1, 1)
    return queries.gpu_usage([p.name for p in allocs.projects], since)


def budgets_from_usage(allocs: Allocations, usage, today: dt.date | None = None
                       ) -> list[ProjectBudget]:
    """Grant, use and what is left per project (``usage``: rows of :func:`usage_query`)."""
    today = today or dt.date.today()
    out = []
    for p in allocs.projects:
        start = dt.datetime.combine(p.valid_from, dt.time()) if p.valid_from else None
        used = sum(u.gpu_seconds for u in usage
                   if u.account == p.name and (start is None or u.start is None or
                                               u.start.replace(tzinfo=None) >= start)) / 3600
        out.append(ProjectBudget(p.name, p.programme, p.members, p.gpu_hours, used,
                                 p.valid_from, p.valid_until, p.active(today)))
    return out


def budgets(allocs: Allocations, slurm: SlurmClient, today: dt.date | None = None
            ) -> list[ProjectBudget]:
    return budgets_from_usage(allocs, slurm.run(usage_query(allocs)), today)


async def abudgets(allocs: Allocations, slurm: SlurmClient, today: dt.date | None = None
                   ) -> list[ProjectBudget]:
    return budgets_from_usage(allocs, await slurm.arun(usage_query(allocs)), today)
