"""Small pure functions that fill a JupyterHub ``Config``; ``jupyterhub_config.py`` calls them.

Tests drive each with a plain ``traitlets.config.Config()``. Every value comes from a
:class:`Site` (the local AI Factory's defaults, or a site's own via environment variables), so
the same config serves a site that points it at its own Slurm cluster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import db, services, sitefile
from .paths import DATABASE_ENV, FactoryHome, secret_file
from .sitefile import Auth

if TYPE_CHECKING:
    from .demo.people import People

#: Scopes of the hub roles; the dashboards and pair-debugging issues build on these.
SUPPORT_SCOPES = ["list:users", "read:users", "read:servers", "admin-ui"]
MANAGER_SCOPES = ["list:users", "read:users:activity", "read:servers"]
#: every user: their own things (``self``), and sharing their own servers by name
USER_SCOPES = ["self", "shares!user", "read:users:name"]


@dataclass
class Site:
    """Where the hub lives, how users log in, and which Slurm cluster it fronts.

    Two profiles. **site**: ``AIFACTORY_HOME/etc/site.yaml`` exists and says it all
    (:mod:`workbench.sitefile`): login (OIDC or PAM), database, Slurm, public URL, staff
    groups; nobody is an admin unless the file names them. **demo** (no site file): PAM for
    the demo people of ``cluster/demo-users.yaml``, SQLite under ``AIFACTORY_HOME``, the local
    cluster; these environment variables may change it: ``AIFACTORY_HOME`` (state
    directory), ``SLURM_CONF`` (default: the local cluster's), ``WORKBENCH_PUBLIC_URL`` (what
    users open, default ``http://:8000``), ``WORKBENCH_HUB_IP`` (address the hub API listens
    on, reachable from compute nodes; default 127.0.0.1), ``WORKBENCH_PROXY_API_PORT``
    (default 8001), ``WORKBENCH_CULL_TIMEOUT`` (seconds idle before a server is culled and
    its job cancelled, default 3600).
    """

    home: FactoryHome = field(default_factory=FactoryHome.from_env)
    slurm_conf: str = ""
    bind_url: str = "http://:8000"
    hub_ip: str = "127.0.0.1"
    hub_port: int = 8081
    proxy_api_port: int = 8001
    people: People | None = None  # the demo's people (workbench.demo.people); a site: None
    reconcile_interval: int = 300
    # seconds between route syncs (the reconciler's POST /hub/api/proxy): how long sessions
    # stay unreachable after a proxy restarted on its own (JupyterHub's own pass: 300 s)
    routes_interval: int = 15
    cull_timeout: int = 3600
    cull_every: int = 300
    profile: str = "demo"
    auth: Auth = field(default_factory=Auth)
    admins: tuple[str, ...] = ()
    database: str = ""  # an SQLAlchemy URL for hub, audit and help; "": SQLite files

    @classmethod
    def from_env(cls) -> Site:
        """The site file's profile when ``AIFACTORY_HOME/etc/site.yaml`` exists (raising
        :class:`~workbench.sitefile.SiteError` while it is wrong), else the demo's."""
        home = FactoryHome.from_env()
        if home.site_file.exists():
            return cls.from_file(sitefile.load(home.site_file), home)
        from .demo.people import People  # the demo's own: a site never imports it
        return cls(
            home=home,
            slurm_conf=os.environ.get("SLURM_CONF", str(home.slurm_conf)),
            bind_url=os.environ.get("WORKBENCH_PUBLIC_URL", "http://:8000"),
            hub_ip=os.environ.get("WORKBENCH_HUB_IP", "127.0.0.1"),
            proxy_api_port=int(os.environ.get("WORKBENCH_PROXY_API_PORT", "8001")),
            people=People.load(),
            cull_timeout=int(os.environ.get("WORKBENCH_CULL_TIMEOUT", "3600")),
        )

    @classmethod
    def from_file(cls, f: sitefile.SiteFile, home: FactoryHome | None = None) -> Site:
        return cls(home=home or FactoryHome.from_env(), slurm_conf=f.slurm_conf,
                   bind_url=f.public_url, hub_ip=f.hub_ip, profile="site", auth=f.auth,
                   admins=f.admins, database=f.database)

    @property
    def audit_url(self) -> str:
        """The audit store: the site's database, or the SQLite file under the home."""
        return self.database or str(self.home.hub / "audit.sqlite")

    def process_env(self) -> dict[str, str]:
        """What the hub and every service it fronts get from the site: the home, Slurm, and
        the site's database for the audit store and the help requests."""
        env = {"AIFACTORY_HOME": str(self.home.root), "SLURM_CONF": self.slurm_conf}
        if self.database:
            env[DATABASE_ENV] = self.database
        return env

    @property
    def merit_url(self) -> str:
        """Calls, proposals, reviews and awards: the site's database, or the SQLite file
        under the home (what :attr:`~workbench.paths.FactoryHome.merit_db` names)."""
        return self.database or str(self.home.hub / "merit.sqlite")

    @property
    def proxy_token(self) -> str:
        return secret_file(self.home.secrets / "proxy_token")

    @property
    def hub_api_url(self) -> str:
        return f"http://{self.hub_ip}:{self.hub_port}/hub/api"

    def service_token(self, name: str) -> str:
        return secret_file(self.home.secrets / f"service-{name}-token")

    def services(self):
        """The hub services (:mod:`workbench.services`): reconciler, idle culler, and the
        catalogue, help and dashboard services."""
        return services.registry(self)


def hub_sqlite_kwargs() -> dict:
    """``JupyterHub.db_kwargs`` for the hub's own SQLite file: WAL, commits that do not wait
    for the disk (:class:`workbench.db.WriteAheadConnection`); JupyterHub's own
    ``check_same_thread`` kept."""
    return {"connect_args": {"check_same_thread": False,
                             "factory": db.WriteAheadConnection}}


def update_hub(c, site: Site) -> None:
    """Where the hub keeps its state, and how it listens."""
    hub = site.home.hub
    c.JupyterHub.bind_url = site.bind_url
    c.JupyterHub.hub_ip = site.hub_ip
    c.JupyterHub.hub_port = site.hub_port
    c.JupyterHub.db_url = site.database or f"sqlite:///{hub / 'jupyterhub.sqlite'}"
    if c.JupyterHub.db_url.startswith("sqlite:///"):
        c.JupyterHub.db_kwargs = hub_sqlite_kwargs()
    c.JupyterHub.cookie_secret_file = str(hub / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(site.home.run / "jupyterhub.pid")
    # An HPC hub must not cancel everyone's jobs when it stops; it re-adopts them on start.
    c.JupyterHub.cleanup_servers = False


def update_proxy(c, site: Site) -> None:
    """configurable-http-proxy runs on its own (``workbench up`` starts it) and outlives the hub."""
    c.ConfigurableHTTPProxy.should_start = False
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{site.proxy_api_port}"
    c.ConfigurableHTTPProxy.auth_token = site.proxy_token


def update_auth(c, site: Site) -> None:
    """Who logs in and how: the demo's people by PAM, or the site file's login (OIDC through
    oauthenticator, or PAM) with who may log in decided at each login; the roles of the
    staff groups either way."""
    if site.profile == "demo":
        c.JupyterHub.authenticator_class = "workbench-demo"
        c.Authenticator.allowed_users = set(site.people.names)
        c.Authenticator.admin_users = set(site.people.admins)
        groups = site.people.groups()
        c.JupyterHub.load_groups = {g: {"users": users} for g, users in groups.items()}
    else:
        from spawners import login  # the hub side: only where a hub is configured
        login.configure(c, site)
    # a person removed from the people file or the site's projects is not let in again
    # because the hub's database still knows them, and their tokens stop working within
    # auth_refresh_age (the authenticator's refresh_user says no; strict: API tokens too)
    c.Authenticator.allow_existing_users = False
    c.Authenticator.auth_refresh_strict = True
    c.JupyterHub.load_roles = [
        {"name": "support", "description": "Support engineers: see users, sessions, queue",
         "scopes": SUPPORT_SCOPES, "groups": ["support"]},
        {"name": "managers", "description": "Managers: see allocation use and activity",
         "scopes": MANAGER_SCOPES, "groups": ["managers"]},
        # pair-debugging: users share their own servers (hub sharing API), naming people
        {"name": "user", "description": "Standard user privileges, and sharing own servers",
         "scopes": USER_SCOPES},
    ]


def update_services(c, site: Site) -> None:
    """The hub services (:mod:`workbench.services`), each with only the scopes it needs and
    access decided by role. They run apart from the hub (``workbench up`` starts them, like
    the proxy), so a hub restart neither stops nor orphans them."""
    services.hub_config(c, site)
    # /hub/metrics only for a token with read:metrics (the metrics role), never anonymous
    c.JupyterHub.authenticate_prometheus = True


def update_spawner(c, site: Site) -> None:
    # the hub side: only where a hub is configured
    from spawners import api, calls, openapi, presets, sessions, walltime

    api.install()  # our strict port callback in place of batchspawner's
    c.JupyterHub.spawner_class = "slurm-gpu"
    # the home page shows each session's walltime and offers to extend it
    c.JupyterHub.template_paths = [str(Path(walltime.__file__).parent / "templates" / "hub")]
    c.JupyterHub.extra_handlers = [(walltime.ROUTE, walltime.WalltimeHandler),
                                   (sessions.ROUTE, sessions.SessionsHandler),
                                   *presets.handlers(), *openapi.handlers()]
    # the home page lists the open calls for compute time (the access service's)
    c.JupyterHub.template_vars = {"open_calls": calls.open_calls(site.merit_url)}
    # what the sessions API reads when a user has no spawner of ours yet
    c.JupyterHub.tornado_settings = {"workbench_audit": site.audit_url,
                                     "workbench_cull_timeout": site.cull_timeout}
    c.SlurmGPUSpawner.slurm_conf = site.slurm_conf
    c.SlurmGPUSpawner.audit_db = site.audit_url
    # sessions call the user-facing services (catalogue, help) with their own token
    c.SlurmGPUSpawner.user_services = services.user_service_urls(site)
    c.Spawner.env_keep = ["LANG", "LC_ALL"]
    c.Spawner.start_timeout = 300
    # a job that dies is noticed within one poll (all polls share one squeue per 10 s)
    c.Spawner.poll_interval = 15
    c.SlurmGPUSpawner.poll_snapshot_age = 10
    # spawners are checked (pending spawns carried on) in the background after 10 s
    c.JupyterHub.init_spawners_timeout = 10


def configure(c, site: Site | None = None) -> None:
    """The whole workbench hub configuration."""
    site = site or Site.from_env()
    update_hub(c, site)
    update_proxy(c, site)
    update_auth(c, site)
    update_spawner(c, site)
    update_services(c, site)
