"""Where the local AI Factory keeps its files.

Everything the local cluster and hub write (configuration, keys, sockets, pid files, logs,
databases, fake GPU devices) lives under one directory, ``AIFACTORY_HOME``
(default ``/var/lib/aifactory``), so ``workbench down`` plus ``rm -r`` leaves nothing behind.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = "/var/lib/aifactory"
#: the site's database (hub, audit, help), given to the hub and its services from the site
#: file's ``database`` (:meth:`workbench.hubconfig.Site.process_env`)
DATABASE_ENV = "WORKBENCH_DATABASE_URL"

#: the source tree's data files (cluster templates, demo files, hub config), shipped in the wheel
DATA_DIR = Path(__file__).resolve().parent / "data"
#: the repository root, when running from a source checkout
_SOURCE_ROOT = DATA_DIR.parent.parent


def data_file(*parts: str) -> Path:
    """A file shipped with the package: ``cluster/...`` or ``jupyterhub_config.py``."""
    here = DATA_DIR.joinpath(*parts)
    if here.exists():
        return here
    # running from a source checkout (tests, editable install): the repository root
    return _SOURCE_ROOT.joinpath(*parts)


@dataclass(frozen=True)
class FactoryHome:
    """The directory layout under ``AIFACTORY_HOME``."""

    root: Path

    @classmethod
    def from_env(cls) -> FactoryHome:
        return cls(Path(os.environ.get("AIFACTORY_HOME", DEFAULT_HOME)))

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def dev(self) -> Path:
        return self.root / "dev"

    @property
    def secrets(self) -> Path:
        """Root-only files: demo password, database password, proxy token."""
        return self.root / "secrets"

    @property
    def hub(self) -> Path:
        """JupyterHub's database and cookie secret."""
        return self.root / "hub"

    @property
    def munge(self) -> Path:
        return self.root / "munge"

    @property
    def site_file(self) -> Path:
        """The site file (:mod:`workbench.sitefile`); without it the demo profile applies."""
        return self.etc / "site.yaml"

    def config_file(self, name: str) -> Path:
        """The file ``name`` (``allocations.yaml``, ``catalogue.yaml``) in force: the one under
        ``etc/``; without it, the demo's shipped copy, but only in the demo profile: a site
        (a site file exists) never reads the demo's, and is told its own is missing."""
        own = self.etc / name
        if own.exists() or self.site_file.exists():
            return own
        return data_file("cluster", name)

    @property
    def slurm_conf(self) -> Path:
        return self.etc / "slurm.conf"

    @property
    def demo_password_file(self) -> Path:
        return self.secrets / "demo_password"

    def database(self, name: str) -> str:
        """Where the workbench's store ``name`` (``audit``, ``help``) lives: the site's
        database (``$WORKBENCH_DATABASE_URL``) or, in the demo, the SQLite file
        ``hub/NAME.sqlite``."""
        return os.environ.get(DATABASE_ENV, "").strip() or str(self.hub / f"{name}.sqlite")

    @property
    def audit_db(self) -> str:
        return self.database("audit")

    @property
    def help_db(self) -> str:
        return self.database("help")

    @property
    def merit_db(self) -> str:
        """Calls, proposals, reviews and the awards they led to (``hub/merit.sqlite``)."""
        return self.database("merit")

    def pidfile(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def logfile(self, name: str) -> Path:
        return self.log / f"{name}.log"


def database_made(path_or_url: Path | str) -> bool:
    """Whether a store's database (:meth:`FactoryHome.database`) is there to read: a URL's
    is (a site's server); a SQLite file only once something wrote it (reading must not
    create it), and only where this process may see it (a user's own processes cannot look
    into the hub's root-only directory). Imports nothing: asked before SQLAlchemy is."""
    return "://" in str(path_or_url) or os.path.exists(path_or_url)


def secret_file(path: Path, make=lambda: secrets.token_urlsafe(24)) -> str:
    """Read a root-only secret, creating it (mode 0600) on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value
