"""The site profile on this machine: ``workbench up --profile site-demo``.

The same local Slurm cluster, with what a site brings instead of the demo's shortcuts:
Debian's PostgreSQL for the hub, audit and help databases, a real OpenID provider
(npm ``oidc-provider``, :mod:`workbench.demo.oidc`) whose accounts are the demo people (same
password) with entitlements as their groups claim, and a site file
(``AIFACTORY_HOME/etc/site.yaml``) that says so. The hub then runs exactly as at a site: it
reads only the site file.

A site never reads the demo's shipped allocations and catalogue
(:meth:`~workbench.paths.FactoryHome.config_file`), so the site-demo writes its own copies of
them under ``etc/``. Every file written here starts with :data:`MARK`, so ``workbench up``
(the demo profile) removes them again, and never a file an operator wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .. import atomicfile
from ..paths import FactoryHome, data_file, secret_file
from .oidc import DemoProvider
from .people import People
from .postgres import LocalPostgres

MARK = "# Written by `workbench up --profile site-demo`"
PG_PORT = 15432
OIDC_PORT = 8099
CLIENT_ID = "aifactory-workbench"
ROLE = DATABASE = "workbench"
#: the entitlement (groups claim value) of each hub group, as a federation would write it
ENTITLEMENTS = {g: f"urn:geant:aifactory.example.eu:group:workbench:{g}"
                for g in ("support", "managers", "reviewers", "admins")}
#: a provider account with no Unix user: refused at login (no hub user is created)
STRANGER = "nora"
#: the demo's files a site keeps under etc/: the site-demo writes copies of them there
SITE_COPIES = ("allocations.yaml", "catalogue.yaml")


def is_site_demo(path: Path) -> bool:
    """Whether ``path`` is a site file this module wrote (not an operator's)."""
    try:
        return path.read_text().startswith(MARK)
    except OSError:
        return False


@dataclass
class SiteDemo:
    home: FactoryHome = field(default_factory=FactoryHome.from_env)
    public_url: str = "http://127.0.0.1:8000/"
    host: str = "127.0.0.1"

    @property
    def postgres(self) -> LocalPostgres:
        return LocalPostgres(self.home.root / "postgres" / "data", PG_PORT, self.host)

    @property
    def provider(self) -> DemoProvider:
        return DemoProvider(self.home.root / "oidc", f"http://{self.host}:{OIDC_PORT}",
                            OIDC_PORT, self.host)

    @property
    def pgpass(self) -> Path:
        return self.home.secrets / "pgpass"

    @property
    def client_secret_file(self) -> Path:
        return self.home.secrets / "oidc-client-secret"

    def accounts(self, people: People, password: str) -> dict[str, dict]:
        """The provider's accounts: every demo person (their hub groups as entitlements;
        the demo's admin flag is not carried: a site names its admins) and a stranger."""
        out = {}
        for p in people.people:
            out[p.name] = {"password": password, "claims": {
                "preferred_username": p.name, "name": p.description or p.name,
                "email": f"{p.name}@aifactory.example.eu",
                "eduperson_entitlement": [ENTITLEMENTS[g] for g in p.hub_groups
                                          if g in ENTITLEMENTS]}}
        out[STRANGER] = {"password": password, "claims": {
            "preferred_username": STRANGER, "name": "A provider account without a Unix user",
            "email": f"{STRANGER}@aifactory.example.eu", "eduperson_entitlement": []}}
        return out

    def site_file(self) -> str:
        body = {
            "public_url": self.public_url,
            "hub_ip": self.host,
            "slurm_conf": str(self.home.slurm_conf),
            "auth": {"kind": "oidc", "issuer": self.provider.issuer, "client_id": CLIENT_ID,
                     "client_secret_file": str(self.client_secret_file),
                     "username_claim": "preferred_username",
                     "groups_claim": "eduperson_entitlement",
                     "groups": {v: g for g, v in ENTITLEMENTS.items()},
                     "allow": "project-members"},
            "database": self.postgres.url(ROLE, DATABASE),
        }
        return (f"{MARK}: the site profile on this machine.\n# `workbench up` (the demo "
                "profile) removes this file; an operator's own site file is never touched.\n"
                + yaml.safe_dump(body, sort_keys=False))

    def up(self, people: People, password: str) -> None:
        """PostgreSQL (role and database), the provider (accounts, client), the site file."""
        db_password = secret_file(self.home.secrets / "pg_password")
        pg = self.postgres
        pg.start()
        pg.ensure_database(ROLE, db_password, DATABASE)
        pg.write_pgpass(self.pgpass, ROLE, db_password, DATABASE)
        client_secret = secret_file(self.client_secret_file)
        provider = self.provider
        provider.write_config(
            [{"client_id": CLIENT_ID, "client_secret": client_secret,
              "redirect_uris": [self.public_url.rstrip("/") + "/hub/oauth_callback"]}],
            self.accounts(people, password))
        provider.start()
        self.write_copies()
        atomicfile.write_text(self.home.site_file, self.site_file(), mode=0o644)

    def write_copies(self) -> None:
        """The demo's allocations and catalogue as the site's own under ``etc/`` (a site
        never reads the shipped ones); a file already there is kept."""
        for name in SITE_COPIES:
            copy = self.home.etc / name
            if not copy.exists():
                atomicfile.write_text(copy, f"{MARK}: a copy of the demo's, the site's own.\n"
                                      + data_file("cluster", name).read_text(), mode=0o644)

    def remove_files(self) -> list[Path]:
        """The files :meth:`up` wrote (site file, copies), back to the demo profile."""
        gone = []
        for path in (self.home.site_file, *(self.home.etc / n for n in SITE_COPIES)):
            if is_site_demo(path):
                path.unlink()
                gone.append(path)
        return gone

    def down(self) -> list[str]:
        stopped = []
        if self.provider.stop():
            stopped.append("oidc-provider")
        if self.postgres.stop():
            stopped.append("postgresql")
        return stopped
