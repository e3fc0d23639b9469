"""The site file, ``$AIFACTORY_HOME/etc/site.yaml``: how a site runs the workbench.

It says how users log in, where the database and Slurm are, the public URL, and which login
groups become the hub's ``support``, ``managers``, ``reviewers`` (merit review of
proposals for compute time) and ``admins`` groups::

    public_url: https://workbench.example.eu/
    hub_ip: 10.0.0.5                      # where compute nodes reach the hub (default 127.0.0.1)
    slurm_conf: /etc/slurm/slurm.conf
    auth:
      kind: oidc                          # or: pam
      issuer: https://login.example.eu/
      client_id: aifactory-workbench
      client_secret_file: /etc/aifactory/oidc-client-secret
      username_claim: preferred_username  # must name an existing Unix user
      groups_claim: eduperson_entitlement
      groups:                             # claim value -> hub group
        "urn:geant:example.eu:group:aifactory:support": support
      allow: project-members              # or: everyone (every user with a Unix account)
    admins: []                            # hub admins by name (default: none)
    database: postgresql+psycopg://workbench@db.example.eu/workbench   # hub, audit and help

Without the file the demo profile applies (PAM, the demo people, SQLite under
``AIFACTORY_HOME``). :func:`load` checks every key and raises :class:`SiteError` with
``file:line: what is wrong``; nothing half-read is ever used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from . import linedyaml
from .linedyaml import Lined

#: the hub groups a login group may become (their roles: workbench.hubconfig)
HUB_GROUPS = ("support", "managers", "reviewers", "admins")
#: who may log in: members of a project in the allocations file (and staff), or every user
#: with a Unix account
ALLOW = ("project-members", "everyone")
AUTH_KINDS = ("pam", "oidc")

_TOP = {"public_url", "hub_ip", "slurm_conf", "auth", "admins", "database"}
_AUTH = {"kind", "issuer", "client_id", "client_secret_file", "username_claim",
         "groups_claim", "groups", "allow"}
_OIDC_ONLY = {"issuer", "client_id", "client_secret_file", "username_claim", "groups_claim"}
_DB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgresql+psycopg2")


class SiteError(ValueError):
    """The site file is unusable: ``path:line: what is wrong``."""


@dataclass(frozen=True)
class Auth:
    kind: str = "pam"
    issuer: str = ""
    client_id: str = ""
    client_secret_file: str = ""
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    groups: dict[str, str] = field(default_factory=dict)  # login group -> hub group
    allow: str = "project-members"

    @property
    def client_secret(self) -> str:
        return Path(self.client_secret_file).read_text().strip()

    def hub_groups(self, claimed) -> list[str]:
        """The hub groups a login's groups claim (a list, or one string) gives."""
        values = [claimed] if isinstance(claimed, str) else list(claimed or ())
        return sorted({self.groups[v] for v in values if v in self.groups})


@dataclass(frozen=True)
class SiteFile:
    path: Path
    public_url: str = "http://:8000"
    hub_ip: str = "127.0.0.1"
    slurm_conf: str = "/etc/slurm/slurm.conf"
    auth: Auth = field(default_factory=Auth)
    admins: tuple[str, ...] = ()
    database: str = ""  # "" : SQLite files under AIFACTORY_HOME/hub


def default_path() -> Path:
    return Path(os.environ.get("AIFACTORY_HOME", "/var/lib/aifactory")) / "etc" / "site.yaml"


class _Check:
    def __init__(self, path: Path):
        self.path = path

    def fail(self, where, key, message: str):
        line = where.line_of(key) if isinstance(where, Lined) else 1
        raise SiteError(f"{self.path}:{max(line, 1)}: {message}")

    def keys(self, mapping: Lined, allowed: set[str], what: str) -> None:
        for key in mapping:
            if key not in allowed:
                self.fail(mapping, key, f"unknown key {key!r} in {what}; allowed: "
                                        f"{', '.join(sorted(allowed))}")

    def text(self, mapping: Lined, key: str, default: str = "", required: bool = False) -> str:
        if key not in mapping:
            if required:
                self.fail(mapping, key, f"{key} is required")
            return default
        value = mapping[key]
        if not isinstance(value, str) or not value.strip():
            self.fail(mapping, key, f"{key} must be a non-empty string, not {value!r}")
        return value.strip()

    def url(self, mapping: Lined, key: str, default: str = "", required: bool = False,
            schemes: tuple[str, ...] = ("http", "https")) -> str:
        value = self.text(mapping, key, default, required)
        if key in mapping:
            parts = urlsplit(value)
            if parts.scheme not in schemes or not parts.netloc:
                self.fail(mapping, key, f"{key} must be a {' or '.join(schemes)} URL with a "
                                        f"host, not {value!r}")
        return value


def load(path: Path | str | None = None) -> SiteFile:
    """Read and check the site file (see the module's documentation)."""
    path = Path(path) if path else default_path()
    try:
        raw = linedyaml.load(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise SiteError(f"{path}: cannot read: {e}") from e
    except yaml.YAMLError as e:
        # where an unclosed bracket or quote began, else where the problem is
        mark = getattr(e, "context_mark", None) or getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise SiteError(f"{path}:{line}: not YAML: {getattr(e, 'problem', e)}") from e
    c = _Check(path)
    if not isinstance(raw, Lined):
        raise SiteError(f"{path}:1: expected a mapping of keys ({', '.join(sorted(_TOP))})")
    c.keys(raw, _TOP, "the site file")
    public_url = c.url(raw, "public_url", "http://:8000")
    hub_ip = c.text(raw, "hub_ip", "127.0.0.1")
    slurm_conf = c.text(raw, "slurm_conf", "/etc/slurm/slurm.conf")
    if not Path(slurm_conf).is_file():
        c.fail(raw, "slurm_conf" if "slurm_conf" in raw else None,
               f"slurm_conf: {slurm_conf} is not a file (the cluster's slurm.conf)")
    auth = _auth(c, raw)
    admins = raw.get("admins") or []
    if not isinstance(admins, list) or not all(isinstance(a, str) and a for a in admins):
        c.fail(raw, "admins", f"admins must be a list of user names, not {admins!r}")
    database = c.text(raw, "database", "")
    if database:
        scheme = database.split("://", 1)[0] if "://" in database else ""
        if scheme not in _DB_SCHEMES:
            c.fail(raw, "database", f"database must be an SQLAlchemy URL ({', '.join(_DB_SCHEMES)}"
                                    f"://...), not {database!r}")
    return SiteFile(path, public_url, hub_ip, slurm_conf, auth, tuple(admins), database)


def _auth(c: _Check, raw: Lined) -> Auth:
    spec = raw.get("auth")
    if spec is None:
        c.fail(raw, None, "auth is required: how users log in (kind: oidc or pam)")
    if not isinstance(spec, Lined):
        c.fail(raw, "auth", f"auth must be a mapping, not {spec!r}")
    c.keys(spec, _AUTH, "auth")
    kind = c.text(spec, "kind", required=True)
    if kind not in AUTH_KINDS:
        c.fail(spec, "kind", f"auth kind must be one of {', '.join(AUTH_KINDS)}, not {kind!r}")
    allow = c.text(spec, "allow", "project-members")
    if allow not in ALLOW:
        c.fail(spec, "allow", f"allow must be one of {', '.join(ALLOW)}, not {allow!r}")
    groups = spec.get("groups") or {}
    if not isinstance(groups, dict):
        c.fail(spec, "groups", "groups must map login groups to hub groups "
                               f"({', '.join(HUB_GROUPS)})")
    for claim, hub_group in groups.items():
        if not isinstance(claim, str) or hub_group not in HUB_GROUPS:
            c.fail(groups, claim, f"groups: {claim!r} must become one of "
                                  f"{', '.join(HUB_GROUPS)}, not {hub_group!r}")
    if kind == "pam":
        extra = sorted(k for k in spec if k in _OIDC_ONLY)
        if extra:
            c.fail(spec, extra[0], f"{extra[0]} is for auth kind oidc, not pam")
        if groups:
            c.fail(spec, "groups", "groups need a login token (auth kind oidc); with pam, "
                                   "the hub's groups are the Unix groups named like them")
        return Auth(kind="pam", allow=allow)
    issuer = c.url(spec, "issuer", required=True)
    client_id = c.text(spec, "client_id", required=True)
    secret = c.text(spec, "client_secret_file", required=True)
    try:
        mode = os.stat(secret).st_mode
        if not Path(secret).read_text().strip():
            c.fail(spec, "client_secret_file", f"client_secret_file: {secret} is empty")
    except OSError as e:
        c.fail(spec, "client_secret_file", f"client_secret_file: cannot read {secret}: "
                                           f"{e.strerror}")
    if mode & 0o077:
        c.fail(spec, "client_secret_file", f"client_secret_file: {secret} is readable by "
                                           f"others (mode {mode & 0o777:o}): chmod 600 it")
    return Auth("oidc", issuer, client_id, secret, c.text(spec, "username_claim",
                "preferred_username"), c.text(spec, "groups_claim", "groups"),
                {str(k): v for k, v in groups.items()}, allow)
