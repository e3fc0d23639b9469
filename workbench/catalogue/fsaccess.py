"""Access enforced by the file system: a Unix group per project, POSIX ACLs per dataset.

Every dataset lives in ``$AIFACTORY_HOME/datasets/<id>/``, owned by root, mode 0750 (files
0640), with an access ACL built from the catalogue and the allocations file:

- a Unix group per project, ``aif-<project>``, whose members are the project's members in the
  allocations file (:func:`sync_groups` adds, removes and deletes so it matches);
- a dataset open to some projects gets one ``group:aif-<project>:r-x`` entry per project;
- a licence-gated dataset gets no group entry but one ``user:<name>:r-x`` entry per member of
  an allowed project who accepted its licence (granted the moment they accept).

Why ACLs: a process's supplementary groups are fixed when it starts, so a group granted on
acceptance would not reach a kernel or Slurm job already running; an ACL entry is checked at
every ``open``, so bob's running session reads the data right after he accepts. Removing a
member from the allocations file removes them from the project's group (processes started
afterwards are refused; a process started earlier keeps the groups it started with, the Unix
rule) and removes their user entries at once. The ACL text is set whole (``setfacl --set``),
so a deleted group never leaves an entry behind.
"""

from __future__ import annotations

import grp
import hashlib
import logging
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..paths import FactoryHome
from .model import Catalogue, Dataset
from .policy import Membership

log = logging.getLogger(__name__)

GROUP_PREFIX = "aif-"
#: the longest Unix group name Debian's groupadd takes
MAX_GROUP = 32


def datasets_root(home: FactoryHome | None = None) -> Path:
    """Where the datasets live on the cluster's shared storage."""
    return (home or FactoryHome.from_env()).root / "datasets"


def group_name(project: str) -> str:
    """The Unix group of a project: ``aif-research-medai`` (shortened with a hash when the
    name would pass 32 characters)."""
    name = GROUP_PREFIX + project
    if len(name) <= MAX_GROUP:
        return name
    digest = hashlib.sha256(project.encode()).hexdigest()[:6]
    return f"{name[:MAX_GROUP - 7]}-{digest}"


@dataclass(frozen=True)
class FsChange:
    summary: str


def _run(argv: list[str]) -> None:
    if shutil.which(argv[0]) is None:
        raise RuntimeError(f"{argv[0]} is not installed (Debian packages: passwd, acl)")
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: "
                           f"{proc.stderr.strip() or proc.stdout.strip()}")


def _our_groups() -> dict[str, set[str]]:
    return {g.gr_name: set(g.gr_mem) for g in grp.getgrall()
            if g.gr_name.startswith(GROUP_PREFIX)}


def sync_groups(membership: Membership, dry_run: bool = False) -> list[FsChange]:
    """Make the ``aif-*`` groups match the projects and their members."""
    current = _our_groups()
    wanted = {group_name(p.name): set(p.members) for p in membership.projects}
    changes = []
    for name, members in sorted(wanted.items()):
        if name not in current:
            changes.append(FsChange(f"added Unix group {name}"))
            if not dry_run:
                _run(["groupadd", name])
            current[name] = set()
        if current[name] != members:
            added, removed = members - current[name], current[name] - members
            words = [f"+{u}" for u in sorted(added)] + [f"-{u}" for u in sorted(removed)]
            changes.append(FsChange(f"Unix group {name} members {' '.join(words)}"))
            if not dry_run:
                _run(["gpasswd", "-M", ",".join(sorted(members)), name])
    for name in sorted(set(current) - set(wanted)):
        changes.append(FsChange(f"deleted Unix group {name} (its project is gone)"))
        if not dry_run:
            _run(["groupdel", name])
    return changes


def wanted_acl(dataset: Dataset, membership: Membership, acceptors: set[str]) -> list[str]:
    """The named ACL entries of a dataset, e.g. ``["group:aif-startup-helios"]`` or
    ``["user:bob"]`` (permissions added per file type)."""
    allowed = membership.allowed_projects(dataset)
    if dataset.access.licence_acceptance:
        readers = {m for p in allowed for m in p.members} & set(acceptors)
        return [f"user:{u}" for u in sorted(readers)]
    return [f"group:{group_name(p.name)}" for p in sorted(allowed, key=lambda p: p.name)]


def _acl_text(entries: list[str], directory: bool) -> str:
    perm = "r-x" if directory else "r--"
    own = "rwx" if directory else "rw-"
    base = [f"user::{own}", "group::---", "other::---", f"mask::{perm}"]
    return ",".join(base + [f"{e}:{perm}" for e in entries])


def _current_acl(path: Path) -> str:
    proc = subprocess.run(["getfacl", "--omit-header", "--absolute-names", "--numeric",
                           str(path)], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else ""


def _normal(text: str) -> set[str]:
    return {line.split("#")[0].strip() for line in text.replace(",", "\n").splitlines()
            if line.strip() and not line.startswith("#")}


def _numeric(entries: list[str], directory: bool) -> set[str]:
    """The entries as getfacl --numeric writes them (ids), for comparing."""
    out = set()
    for e in _acl_text(entries, directory).split(","):
        kind, name, perm = e.split(":")
        if name and kind == "user":
            name = str(pwd.getpwnam(name).pw_uid)
        elif name and kind == "group":
            name = str(grp.getgrnam(name).gr_gid)
        out.add(f"{kind}:{name}:{perm}")
    return out


def apply_dataset(path: Path, entries: list[str], dry_run: bool = False) -> list[str]:
    """Give ``path`` (a dataset directory) and everything in it root ownership, modes
    0750/0640 and exactly these ACL entries; returns the paths changed."""
    changed = []
    targets = [path, *sorted(p for p in path.rglob("*"))]
    for target in targets:
        directory = target.is_dir()
        st = target.lstat()
        mode = 0o750 if directory else 0o640
        same = (st.st_uid == 0 and st.st_gid == 0 and
                _normal(_current_acl(target)) == _numeric(entries, directory))
        if same:
            continue
        changed.append(str(target))
        if dry_run:
            continue
        os.chown(target, 0, 0, follow_symlinks=False)
        os.chmod(target, mode)
        _run(["setfacl", "--set", _acl_text(entries, directory), str(target)])
    return changed


def sync_datasets(catalogue: Catalogue, membership: Membership,
                  acceptors: dict[str, set[str]], root: Path | None = None,
                  only: str | None = None, dry_run: bool = False) -> list[FsChange]:
    """Make every dataset directory's owner, modes and ACL match the rules (``only``: one
    dataset). Missing directories are reported, not created."""
    root = root or datasets_root()
    changes = []
    for d in catalogue.datasets:
        if only and d.id != only:
            continue
        path = root / d.id
        if not path.is_dir():
            changes.append(FsChange(f"dataset {d.id}: no directory {path} (not generated?)"))
            continue
        entries = wanted_acl(d, membership, acceptors.get(d.id, set()))
        if apply_dataset(path, entries, dry_run):
            who = ", ".join(e.split(":", 1)[1] for e in entries) or "nobody"
            changes.append(FsChange(f"dataset {d.id}: readable by {who}"))
    return changes


def sync_all(membership: Membership, catalogue: Catalogue | None = None,
             root: Path | None = None, licences=None, dry_run: bool = False) -> list[FsChange]:
    """Groups, then every dataset's ACL: what ``workbench up`` and ``workbench allocations
    apply`` run after Slurm's accounts."""
    from .model import load
    from .policy import LicenceStore, acceptors_by_dataset

    catalogue = catalogue or load()
    licences = licences or LicenceStore()
    changes = sync_groups(membership, dry_run)
    changes += sync_datasets(catalogue, membership,
                             acceptors_by_dataset(licences, catalogue.datasets), root,
                             dry_run=dry_run)
    return changes
