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
import logging
import os
import pwd
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ..audit import AuditLog, AuditRecord
from ..paths import FactoryHome
from . import lineage
from .model import Dataset

log = logging.getLogger(__name__)


class Access(StrEnum):
    ALLOWED = "allowed"
    LICENCE_REQUIRED = "licence-required"
    REFUSED = "refused"


@dataclass(frozen=True)
class ProjectInfo:
    name: str
    programme: str
    members: tuple[str, ...]
    datasets: tuple[str, ...] = ()  # granted with the project by an award (merit review)


@dataclass(frozen=True)
class Membership:
    """Projects, their programmes and members: the part of the allocations file access
    depends on."""

    projects: tuple[ProjectInfo, ...]

    @classmethod
    def from_allocations(cls, allocs) -> Membership:
        """From a :class:`workbench.allocations.Allocations` (its public API only)."""
        return cls(tuple(ProjectInfo(p.name, p.programme, tuple(p.members),
                                     tuple(p.datasets)) for p in allocs.projects))

    @classmethod
    def load(cls, path: Path | None = None) -> Membership:
        from ..allocations.loader import load
        return cls.from_allocations(load(path))

    def project(self, name: str) -> ProjectInfo | None:
        return next((p for p in self.projects if p.name == name), None)

    def projects_of(self, user: str) -> list[ProjectInfo]:
        return [p for p in self.projects if user in p.members]

    def allowed_projects(self, dataset: Dataset) -> list[ProjectInfo]:
        """The projects whose members may read ``dataset`` (licence aside)."""
        rule = dataset.access
        return [p for p in self.projects
                if rule.everyone or p.programme in rule.programmes or p.name in rule.projects
                or dataset.id in p.datasets]

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
    """Who accepted which dataset's licence, as the audit store (:mod:`workbench.audit`)
    holds it: a ``dataset.licence-accepted`` record (actor: the user, subject: the dataset,
    ``licence``: the URI accepted) and ``dataset.licence-withdrawn`` when an operator takes
    one back; the latest of the two for a user and dataset decides. An acceptance holds for
    the licence URI accepted; a dataset whose licence changes must be accepted again.

    The records are read once, then only those appended since (by any process). ``audit``:
    the audit store (default: the site's); ``legacy``: the JSON file that kept the acceptances
    before (default with the site's audit store: ``$AIFACTORY_HOME/catalogue/licences.json``),
    imported into the audit store when found and then renamed ``licences.json.imported``.
    """

    ACTIONS = (lineage.LICENCE_ACCEPTED, lineage.LICENCE_WITHDRAWN)

    def __init__(self, audit: AuditLog | None = None, legacy: Path | str | None = None):
        if audit is None:
            home = FactoryHome.from_env()
            audit = AuditLog(home.audit_db)
            legacy = legacy or home.root / "catalogue" / "licences.json"
        self.audit = audit
        self.legacy = Path(legacy) if legacy else None
        self._lock = threading.RLock()
        self._tally: tuple[int, int] | None = None  # (records, latest number) folded in
        self._state: dict[str, dict[str, str]] = {}  # dataset -> user -> licence accepted
        self._legacy_checked = False

    # -- reading ----------------------------------------------------------------------------

    def _current(self) -> dict[str, dict[str, str]]:
        with self._lock:
            if not self._legacy_checked:
                self._legacy_checked = True
                self._import_legacy()
            tally = self.audit.tally(self.ACTIONS)
            if tally != self._tally:
                seen = self._tally or (0, 0)
                new = self.audit.numbered(self.ACTIONS, after=seen[1])
                if seen[0] + len(new) != tally[0]:  # one committed late, below the latest
                    self._state = {}
                    new = self.audit.numbered(self.ACTIONS)
                for _, rec in new:
                    self._fold(rec)
                self._tally = (tally[0], new[-1][0] if new else seen[1])
            return self._state

    def _fold(self, rec: AuditRecord) -> None:
        users = self._state.setdefault(rec.subject, {})
        if rec.action == lineage.LICENCE_WITHDRAWN:
            users.pop(rec.actor, None)
        elif rec.details.get("licence"):
            users[rec.actor] = rec.details["licence"]

    def accepted(self, dataset: Dataset, user: str) -> bool:
        return self._current().get(dataset.id, {}).get(user) == dataset.licence

    def acceptors(self, dataset: Dataset) -> set[str]:
        return {u for u, lic in self._current().get(dataset.id, {}).items()
                if lic == dataset.licence}

    def all(self) -> dict[str, dict[str, str]]:
        """Dataset id → user → the licence URI they accepted last."""
        return {d: dict(users) for d, users in self._current().items() if users}

    # -- writing ----------------------------------------------------------------------------

    def accept(self, dataset: Dataset, user: str, project: str | None = None) -> bool:
        """Record the acceptance (under ``project``); False when it was already recorded."""
        with self._lock:
            if self.accepted(dataset, user):
                return False
            self.audit.record(user, lineage.LICENCE_ACCEPTED, dataset.id,
                              licence=dataset.licence, project=project)
            return True

    def withdraw(self, dataset: Dataset, user: str, by: str | None = None) -> bool:
        """Forget an acceptance (an operator's act, ``by`` whom: default the account running
        this; run the ACL sync afterwards); False when there was none."""
        with self._lock:
            licence = self._current().get(dataset.id, {}).get(user)
            if licence is None:
                return False
            self.audit.record(user, lineage.LICENCE_WITHDRAWN, dataset.id, licence=licence,
                              by=by or pwd.getpwuid(os.getuid()).pw_name)
            return True

    # -- the JSON file of before ----------------------------------------------------------

    def _import_legacy(self) -> None:
        """Make the audit store say what the JSON file says: its acceptances that the audit
        store lacks are recorded, and those the file had withdrawn (earlier versions wrote
        no record of a withdrawal) are withdrawn; then the file is renamed. Safe to repeat
        and between processes (the file's lock)."""
        path = self.legacy
        if path is None or not path.exists():
            return
        try:
            with open(path.with_suffix(".lock"), "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                self._import_file(path)
        except FileNotFoundError:
            pass  # another process imported it meanwhile
        except (OSError, ValueError) as e:
            log.error("%s: licence acceptances not imported (this process serves those of "
                      "the audit store only): %s", path, e)

    def _import_file(self, path: Path) -> None:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise ValueError("expected {dataset: {user: {licence: ..., at: ...}}}")
        state = self._current()
        said = {(d, u): e.get("licence") for d, users in data.items()
                for u, e in users.items() if isinstance(e, dict) and e.get("licence")}
        for (d, u), licence in sorted(said.items()):
            if state.get(d, {}).get(u) != licence:
                self.audit.record(u, lineage.LICENCE_ACCEPTED, d, licence=licence,
                                  accepted_at=data[d][u].get("at"),
                                  imported_from=str(path))
        state = self._current()
        for d, users in sorted(state.items()):
            for u, licence in sorted(users.items()):
                if (d, u) not in said:
                    self.audit.record(u, lineage.LICENCE_WITHDRAWN, d, licence=licence,
                                      by="import", imported_from=str(path))
        os.replace(path, path.with_name(path.name + ".imported"))
        log.info("%s: %d licence acceptances imported into the audit store; renamed "
                 "%s.imported", path, len(said), path.name)


def acceptors_by_dataset(store: LicenceStore, datasets: Iterable[Dataset]) -> dict[str, set[str]]:
    data = store.all()
    return {d.id: {u for u, lic in data.get(d.id, {}).items() if lic == d.licence}
            for d in datasets}
