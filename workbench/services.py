"""The hub services of the workbench: one registry, one recipe.

Every service runs beside the hub, like the proxy: ``workbench up`` starts it as a daemon
with its own pid file and ``log/NAME.log``, ``workbench status`` lists it, and a hub restart
neither stops it nor orphans it. Each one has

- its own API token, from a root-only file under ``secrets/`` (never in argv);
- a role with only the scopes it needs (``scopes``);
- if it serves pages or an API (``port``), a URL the hub's proxy routes
  ``/services/NAME/`` to, and OAuth through the hub: who may use it is decided by the hub,
  which grants ``access:services!service=NAME`` by role to ``access`` (``"users"`` for every
  user, or hub group names); admins always may. The service itself only checks that scope
  (``HubOAuthenticated``), so nothing in its code decides who gets in.

A new service is one :class:`HubService` entry in :func:`registry`; nothing else is copied.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

#: the ``access`` value that lets every hub user use a service
EVERY_USER = "users"
#: the role that may scrape: the hub's own ``/hub/metrics`` (``read:metrics``) and the
#: services whose ``access`` names it (the metrics service)
METRICS_ROLE = "metrics"
#: the token-only service Prometheus scrapes as (no process: its token, root-only, is the
#: scraper's credential), holder of :data:`METRICS_ROLE`
SCRAPER = "prometheus"


@dataclass(frozen=True)
class HubService:
    """One hub service.

    ``argv`` is its command line (tokens and URLs reach it in the environment);
    ``port``: where it listens on the hub's address (None: an API client only, no URL);
    ``scopes``: its own token's scopes; ``access``: who may use it (``EVERY_USER``, group
    names, or ``METRICS_ROLE``: whoever holds that role); ``display``: linked from the hub's
    home page (to those with access);
    ``environment``: extra environment variables.
    ``root_because``: why it must run as root, said in its systemd unit ("": it runs as an
    unprivileged user of its own, with no write access and no reading of ``secrets/`` or
    ``hub/``; the table of daemons, :mod:`workbench.daemontable`).
    """

    name: str
    argv: tuple[str, ...]
    description: str
    scopes: tuple[str, ...] = ()
    port: int | None = None
    access: tuple[str, ...] = ()
    display: bool = False
    environment: dict[str, str] = field(default_factory=dict)
    root_because: str = ""

    @property
    def prefix(self) -> str:
        return f"/services/{self.name}/"

    @property
    def access_scope(self) -> str:
        return f"access:services!service={self.name}"

    def url(self, host: str) -> str | None:
        """Where the service listens (the proxy's target), e.g. ``http://10.0.0.5:8091``."""
        return f"http://{host}:{self.port}" if self.port else None


#: why a dashboard service runs as root (extensions/dashboards/service.py)
DASHBOARD_ROOT = ("it reads every user's job output and writes the dashboards' shared cache "
                  "under AIFACTORY_HOME/dashboards")


def registry(site) -> list[HubService]:
    """Every hub service of the workbench, for ``site`` (a :class:`~workbench.hubconfig.Site`)."""
    py = sys.executable
    return [
        HubService(
            "workbench-reconciler",
            (py, "-m", "workbench.cli", "-v", "reconcile", "--interval",
             str(site.reconcile_interval), "--routes-every", str(site.routes_interval),
             "--proxy-api", f"http://127.0.0.1:{site.proxy_api_port}"),
            "Cancels jobs tagged for this hub that no server owns; keeps the proxy's routes "
            "in step with the hub",
            root_because="it cancels other users' jobs (scancel of any user's job)",
            scopes=("list:users", "read:users", "read:servers", "admin:server_state",
                    "proxy")),
        HubService(
            "idle-culler",
            (py, "-m", "jupyterhub_idle_culler", f"--url={site.hub_api_url}",
             f"--timeout={site.cull_timeout}", f"--cull-every={site.cull_every}"),
            "Stops servers idle for longer than the cull timeout (their jobs are cancelled)",
            scopes=("list:users", "read:users:activity", "read:servers", "delete:servers")),
        # governed datasets (extensions/catalogue): it only checks who calls (OAuth against
        # the hub), so its own token needs no scope; it runs as root to set dataset ACLs and
        # the jobs' AdminComment (lineage)
        HubService(
            "catalogue",
            (py, "-m", "extensions.catalogue"),
            "Governed datasets: search, licences, open (DCAT-AP catalogue)",
            root_because="it sets the datasets' ACLs and the jobs' AdminComment (lineage)",
            port=8091, access=(EVERY_USER,), display=True),
        # pair-debugging (extensions/help): the hub's share API requires whoever grants a
        # share to hold its access scope, which `shares` brings; the token is root-only
        HubService(
            "help",
            (py, "-m", "extensions.help"),
            "Help requests: share your server with support for a while",
            root_because="it reads the tail of the requesting user's job output",
            scopes=("shares", "read:users", "read:servers"),
            port=8092, access=(EVERY_USER,), display=True),
        # Voila behind the hub (extensions/dashboards/service.py): jupyterhub-singleuser with
        # Voila, locked down to one notebook; the hub decides who gets in
        HubService(
            "support-dashboard",
            (py, "-m", "extensions.dashboards.service", "support-dashboard"),
            "Support: sessions, queue, nodes, failures, a user's jobs and output",
            root_because=DASHBOARD_ROOT,
            scopes=("list:users", "read:users:activity"),  # the sessions' last activity
            port=8093, access=("support",), display=True),
        HubService(
            "manager-dashboard",
            (py, "-m", "extensions.dashboards.service", "manager-dashboard"),
            "Programmes: GPU-hours granted, used and left, utilisation, queue waits",
            root_because=DASHBOARD_ROOT,
            port=8094, access=("managers",), display=True),
        # merit-based access (extensions/access): calls, proposals, reviews, awards; who
        # may manage or review is the caller's hub groups (managers, reviewers); its token
        # reads the reviewers group to assign reviewers; root to apply an award to Slurm
        HubService(
            "access",
            (py, "-m", "extensions.access"),
            "Apply for compute time: calls, proposals, peer review, awards",
            root_because="it applies awards to Slurm (sacctmgr) and sets the datasets' "
            "groups and ACLs, as `workbench allocations apply` does",
            scopes=("read:groups!group=reviewers",),
            port=8096, access=(EVERY_USER,), display=True),
        # Prometheus metrics (extensions/metrics): read from the dashboards' shared caches
        # and the audit and help stores, so its token needs no scope; scraped by the
        # holders of the metrics role, as the hub's own /hub/metrics
        HubService(
            "metrics",
            (py, "-m", "extensions.metrics"),
            "Prometheus metrics: sessions, queue, grants, reserved GPUs, datasets, services",
            root_because="it refreshes the dashboards' root-only shared cache (Slurm as root) "
            "and reads the hub's stores and the database password file",
            port=8095, access=(METRICS_ROLE,)),
    ]


def hub_config(c, site) -> None:
    """The services, their roles and who may access them, in the hub's ``Config``."""
    services = registry(site)
    c.JupyterHub.services = [_service_entry(s, site) for s in services]
    roles = list(c.JupyterHub.load_roles or [])
    for s in services:
        if s.scopes:
            roles.append({"name": s.name, "description": f"The {s.name} service's own token",
                          "scopes": list(s.scopes), "services": [s.name]})
    everyone = [s.access_scope for s in services if s.port and EVERY_USER in s.access]
    if everyone:
        user_role = next((r for r in roles if r["name"] == "user"), None)
        if user_role is None:
            user_role = {"name": "user", "description": "Standard user privileges",
                         "scopes": ["self"]}
            roles.append(user_role)
        user_role["scopes"] = [*user_role["scopes"], *everyone]
    for s in services:
        groups = [g for g in s.access if g not in (EVERY_USER, METRICS_ROLE)]
        if s.port and groups:
            roles.append({"name": f"access-{s.name}",
                          "description": f"May use the {s.name} service",
                          "scopes": [s.access_scope], "groups": groups})
    c.JupyterHub.services.append(
        {"name": SCRAPER, "api_token": site.service_token(SCRAPER),
         "info": {"description": "Prometheus' credential: scrapes /hub/metrics and "
                  "/services/metrics/metrics (the metrics role)"}})
    roles.append(metrics_role(services))
    c.JupyterHub.load_roles = roles


def metrics_role(services: list[HubService]) -> dict:
    """The ``metrics`` role: the hub's own metrics (JupyterHub keeps
    ``authenticate_prometheus``, so nobody else reads them) and the services that give it
    access. Held by the :data:`SCRAPER` service; an admin may issue a token with it."""
    return {"name": METRICS_ROLE,
            "description": "Scrapes the hub's /hub/metrics and the metrics service",
            "scopes": ["read:metrics", *(s.access_scope for s in services
                                         if s.port and METRICS_ROLE in s.access)],
            "services": [SCRAPER]}


def _service_entry(s: HubService, site) -> dict:
    entry = {"name": s.name, "api_token": site.service_token(s.name),
             "display": s.display, "info": {"description": s.description}}
    if s.port:
        # the proxy routes /services/NAME/ here; OAuth without a confirmation page
        entry.update(url=s.url(site.hub_ip), oauth_no_confirm=True)
    return entry


def user_service_urls(site) -> dict[str, str]:
    """Services every user may call from a session, by name: the URL (prefix included) a
    compute node reaches them at, e.g. ``{"catalogue": "http://10.0.0.5:8091/services/
    catalogue/"}``. The spawner hands it to sessions as ``AIFACTORY_SERVICES`` (JSON)."""
    return {s.name: s.url(site.hub_ip) + s.prefix for s in registry(site)
            if s.port and EVERY_USER in s.access}


def user_service_scopes(site) -> list[str]:
    """The access scopes a session's own token needs to call the user services."""
    return [s.access_scope for s in registry(site) if s.port and EVERY_USER in s.access]


def process_env(s: HubService, site, base_env: dict[str, str]) -> dict[str, str]:
    """The environment a service runs with: the site's (home, Slurm, database), the hub's
    API, its token, and for a service with a URL what ``HubOAuth`` needs (client id, prefix,
    callback, access scope)."""
    return {**service_env(s, site, base_env), **secret_env(s, site)}


def secret_env(s: HubService, site) -> dict[str, str]:
    """The secrets of a service's environment: its token (a systemd unit keeps them in a
    root-only environment file, never in its text)."""
    return {"JUPYTERHUB_API_TOKEN": site.service_token(s.name)}


def service_env(s: HubService, site, base_env: dict[str, str]) -> dict[str, str]:
    """A service's environment without its secrets (:func:`process_env`)."""
    env = {**base_env, **site.process_env(), **s.environment,
           "JUPYTERHUB_SERVICE_NAME": s.name,
           "JUPYTERHUB_API_URL": site.hub_api_url,
           "JUPYTERHUB_BASE_URL": "/"}
    if s.port:
        env.update(
            JUPYTERHUB_SERVICE_URL=s.url(site.hub_ip),
            JUPYTERHUB_SERVICE_PREFIX=s.prefix,
            JUPYTERHUB_CLIENT_ID=f"service-{s.name}",
            JUPYTERHUB_OAUTH_CALLBACK_URL=f"{s.prefix}oauth_callback",
            JUPYTERHUB_OAUTH_ACCESS_SCOPES=json.dumps([s.access_scope]),
            JUPYTERHUB_OAUTH_SCOPES=json.dumps([s.access_scope]),
            JUPYTERHUB_HOST="",
        )
    return env
