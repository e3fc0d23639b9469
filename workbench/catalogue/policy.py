"""Who may read a dataset: the catalogue's rules against the allocations file, and the
licence acceptances.

A caller may read a dataset when one of their projects (from the allocations file: programmes
→ projects → members) is allowed by the dataset's ``access`` (its programme or the project
itself is listed, or ``programmes: all``) and, for a licence-gated dataset, once they have
accepted its current licence. :func:`decide` says so in words; the file system enforces the
same rules (:mod:`workbench.catalogue.fsaccess`), so this module only explains and records.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from ..paths import FactoryHome
from .model import Dataset


class Access(StrEnum):
    ALLOWED = "allowed"
    LICENCE_REQUIRED = "licence-required"
    REFUSED = "refused"


@dataclass(frozen=True)
class ProjectInfo:
    name: str
    programme: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class Membership:
    """Projects, their programmes and members: the part of the allocations file access
    depends on."""

    projects: tuple[ProjectInfo, ...]

    @classmethod
    def from_allocations(cls, allocs) -> Membership:
        """From a :class:`workbench.allocations.Allocations` (its public API only)."""
        return cls(tuple(ProjectInfo(p.name, p.programme, tuple(p.members))
                         for p in allocs.projects))

    @classmethod
    def load(cls, path: Path | None = None) -> Membership:
        from ..allocations import Allocations
        return cls.from_allocations(Allocations.load(path))

    def project(self, name: str) -> ProjectInfo | None:
        return next((p for p in self.projects if p.name == name), None)

    def projects_of(self, user: str) -> list[ProjectInfo]:
        return [p for p in self.projects if user in p.members]

    def allowed_projects(self, dataset: Dataset) -> list[ProjectInfo]:
        """The projects whose members may read ``dataset`` (licence aside)."""
        rule = dataset.access
        return [p for p in self.projects
                if rule.everyone or p.programme in rule.programmes or p.name in rule.projects]

    def readers(self, dataset: Dataset) -> set[str]:
        return {m for p in self.allowed_projects(dataset) for m in p.members}


@dataclass(frozen=True)
class Decision:
    access: Access
    reason: str
    project: str | None = None  # the project under which the caller reads it

    def as_dict(self) -> dict:
        return {"status": self.access.value, "reason": self.reason, "project": self.project}


def decide(dataset: Dataset, user: str, membership: Membership, accepted: bool,
           project: str | None = None) -> Decision:
    """May ``user`` read ``dataset`` (as a member of ``project``, or of any of their
    projects)? The reason names the rule either way."""
    mine = membership.projects_of(user)
    who = dataset.access.describe()
    if not mine:
        return Decision(Access.REFUSED, f"{user} is a member of no project in the allocations "
                        f"file; dataset {dataset.id} may be used by {who}")
    if project is not None:
        chosen = [p for p in mine if p.name == project]
        if not chosen:
            return Decision(Access.REFUSED, f"{user} is not a member of project {project} "
                            f"(your projects: {', '.join(p.name for p in mine)})")
        mine = chosen
    allowed = {p.name for p in membership.allowed_projects(dataset)}
    ok = [p for p in mine if p.name in allowed]
    if not ok:
        yours = ", ".join(f"{p.name} (programme {p.programme})" for p in mine)
        plural = "s" if len(mine) > 1 else ""
        return Decision(Access.REFUSED, f"dataset {dataset.id} may be used by {who}; your "
                        f"project{plural} {yours} may not")
    if dataset.access.licence_acceptance and not accepted:
        return Decision(Access.LICENCE_REQUIRED,
                        f"dataset {dataset.id} needs its licence "
                        f"({dataset.licence_title or dataset.licence}) accepted first; read it "
                        "and accept it", ok[0].name)
    return Decision(Access.ALLOWED, f"project {ok[0].name} (programme {ok[0].programme}) may "
                    f"use dataset {dataset.id}", ok[0].name)


class LicenceStore:
    """Who accepted which dataset's licence: a root-only JSON file
    (``$AIFACTORY_HOME/catalogue/licences.json``). An acceptance holds for the licence URI
    accepted; a dataset whose licence changes must be accepted again."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path else FactoryHome.from_env().root / "catalogue" / \
            "licences.json"

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def accepted(self, dataset: Dataset, user: str) -> bool:
        entry = self._read().get(dataset.id, {}).get(user)
        return bool(entry) and entry.get("licence") == dataset.licence

    def acceptors(self, dataset: Dataset) -> set[str]:
        return {u for u, e in self._read().get(dataset.id, {}).items()
                if e.get("licence") == dataset.licence}

    def all(self) -> dict:
        return self._read()

    def accept(self, dataset: Dataset, user: str) -> bool:
        """Record the acceptance; False when it was already recorded."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = self.path.with_suffix(".lock")
        with open(lock, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            data = self._read()
            entry = data.setdefault(dataset.id, {}).get(user)
            if entry and entry.get("licence") == dataset.licence:
                return False
            data[dataset.id][user] = {"licence": dataset.licence,
                                      "at": datetime.now(UTC).isoformat(timespec="seconds")}
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        return True

    def withdraw(self, dataset: Dataset, user: str) -> bool:
        """Forget an acceptance (an operator's act; run the ACL sync afterwards)."""
        lock = self.path.with_suffix(".lock")
        if not self.path.exists():
            return False
        with open(lock, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            data = self._read()
            if data.get(dataset.id, {}).pop(user, None) is None:
                return False
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        return True


def acceptors_by_dataset(store: LicenceStore, datasets: Iterable[Dataset]) -> dict[str, set[str]]:
    data = store.all()
    return {d.id: {u for u, e in data.get(d.id, {}).items() if e.get("licence") == d.licence}
            for d in datasets}
