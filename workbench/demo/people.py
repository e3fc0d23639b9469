"""Demo people: real Unix users with the generated demo password, and their hub roles."""

from __future__ import annotations

import logging
import pwd
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..paths import data_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Person:
    name: str
    description: str = ""
    hub_groups: tuple[str, ...] = ()
    hub_admin: bool = False


@dataclass(frozen=True)
class People:
    people: tuple[Person, ...] = field(default_factory=tuple)

    @classmethod
    def load(cls, path: Path | None = None) -> People:
        path = path or data_file("cluster", "demo-users.yaml")
        raw = yaml.safe_load(path.read_text()) or {}
        people = []
        for name, spec in (raw.get("users") or {}).items():
            spec = spec or {}
            if any(c in str(spec.get("description", "")) for c in ":\n"):
                raise ValueError(f"{path}: users.{name}.description: no ':' or line break "
                                 "(it is the Unix user's comment field)")
            people.append(Person(name, spec.get("description", ""),
                                 tuple(spec.get("hub_groups", ())), bool(spec.get("hub_admin"))))
        return cls(tuple(people))

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.people]

    @property
    def admins(self) -> list[str]:
        return [p.name for p in self.people if p.hub_admin]

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for p in self.people:
            for g in p.hub_groups:
                out.setdefault(g, []).append(p.name)
        return out


def ensure_unix_users(people: People, password: str) -> list[str]:
    """Create missing users (home, bash) and set everyone's password; returns those created."""
    created = []
    for p in people.people:
        try:
            pwd.getpwnam(p.name)
        except KeyError:
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash",
                            "--comment", p.description, p.name], check=True)
            created.append(p.name)
    lines = "".join(f"{p.name}:{password}\n" for p in people.people)
    subprocess.run(["chpasswd"], input=lines, text=True, check=True)
    return created
