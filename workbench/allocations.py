"""Programmes, projects and their members, from one allocations file, applied to Slurm.

The file (``cluster/allocations.yaml`` for the demo) names programmes, the projects under
each, each project's members and GPU-hour grant. :func:`apply` makes Slurm accounting match:
one account per programme, one per project below it, one association per member, and the
grant as ``GrpTRESMins=gres/gpu=<hours*60>`` on the project account. It is idempotent and
reports what it changed.
"""

from __future__ import annotations

import pwd
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .paths import data_file
from .slurm import SlurmClient, queries

_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class AllocationError(ValueError):
    """The allocations file is wrong; nothing was applied."""


@dataclass(frozen=True)
class Project:
    name: str
    programme: str
    members: tuple[str, ...]
    gpu_hours: float


@dataclass(frozen=True)
class Programme:
    name: str
    description: str
    projects: tuple[Project, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Allocations:
    programmes: tuple[Programme, ...]

    @property
    def projects(self) -> list[Project]:
        return [p for prog in self.programmes for p in prog.projects]

    def projects_of(self, user: str) -> list[str]:
        return [p.name for p in self.projects if user in p.members]

    @classmethod
    def load(cls, path: Path | None = None, check_users: bool = True) -> Allocations:
        path = path or data_file("cluster", "allocations.yaml")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise AllocationError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(raw, dict) or not isinstance(raw.get("programmes"), dict):
            raise AllocationError(f"{path}: expected a top-level 'programmes:' mapping")
        seen: set[str] = set()
        programmes = []
        for pname, pspec in raw["programmes"].items():
            pspec = pspec or {}
            _check_name(path, pname, seen, "programme")
            projects = []
            for name, spec in (pspec.get("projects") or {}).items():
                spec = spec or {}
                _check_name(path, name, seen, f"project of {pname}")
                hours = spec.get("gpu_hours", 0)
                if isinstance(hours, bool) or not isinstance(hours, (int, float)) or hours < 0:
                    raise AllocationError(
                        f"{path}: project {name}: gpu_hours must be a number >= 0, not {hours!r}")
                members = tuple(spec.get("members") or ())
                for m in members:
                    if check_users:
                        try:
                            pwd.getpwnam(m)
                        except KeyError:
                            raise AllocationError(
                                f"{path}: project {name}: member {m!r} is no user of this "
                                "machine") from None
                projects.append(Project(name, pname, members, float(hours)))
            programmes.append(Programme(pname, pspec.get("description", ""), tuple(projects)))
        return cls(tuple(programmes))


def _check_name(path, name, seen, what) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise AllocationError(f"{path}: {what} name {name!r} must be lower-case letters, "
                              "digits, '-' or '_'")
    if name in seen:
        raise AllocationError(f"{path}: {what} name {name!r} is used twice")
    seen.add(name)


def apply(allocs: Allocations, slurm: SlurmClient, cluster: str) -> list[str]:
    """Make Slurm's accounts and associations match ``allocs``; returns the changes made."""
    changes = []
    accounts = {row[0]: row[1] for row in slurm.run(
        queries.sacctmgr_list("association", "Account", "ParentName", "User",
                              where=(f"cluster={cluster}",)))
        if row[2] == ""}
    members = {(a.user, a.account) for a in slurm.run(queries.associations())
               if a.user}
    grants = {a.account: a.grp_tres_mins.get("gres/gpu") for a in slurm.run(queries.associations())
              if not a.user}

    def add_account(name: str, parent: str, description: str) -> None:
        if name not in accounts:
            slurm.run(queries.sacctmgr_modify(
                "add", "account", name, f"parent={parent}", f"cluster={cluster}",
                f"description={description or name}", f"organization={parent}"))
            changes.append(f"added account {name} under {parent}")

    for prog in allocs.programmes:
        add_account(prog.name, "root", prog.description)
        for proj in prog.projects:
            add_account(proj.name, prog.name, f"{prog.name} project")
            minutes = int(round(proj.gpu_hours * 60))
            if grants.get(proj.name) != minutes:
                slurm.run(queries.sacctmgr_modify(
                    "modify", "account", "where", f"name={proj.name}", f"cluster={cluster}",
                    "set", f"GrpTRESMins=gres/gpu={minutes}"))
                changes.append(f"set {proj.name} grant to {proj.gpu_hours:g} GPU-hours")
            for user in proj.members:
                if (user, proj.name) not in members:
                    slurm.run(queries.sacctmgr_modify(
                        "add", "user", user, f"account={proj.name}", f"cluster={cluster}"))
                    changes.append(f"added {user} to {proj.name}")
    return changes
