"""Start and stop the local AI Factory's configurable-http-proxy, JupyterHub and hub services,
as the table of daemons (:mod:`workbench.daemontable`) describes them."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

from .. import daemons, daemontable
from ..daemontable import HUB, PROXY, Daemon
from ..hubconfig import Site

log = logging.getLogger(__name__)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status < 500
    except urllib.error.HTTPError as e:
        return e.code < 500
    except (urllib.error.URLError, OSError):
        return False


class LocalHub:
    """The proxy (outlives the hub) and the hub, as daemons with pid files."""

    def __init__(self, site: Site | None = None, public_port: int = 8000):
        self.site = site or Site.from_env()
        self.public_port = public_port

    @property
    def home(self):
        return self.site.home

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.public_port}/"

    def daemons(self) -> dict[str, Daemon]:
        """The table of daemons by name (proxy, hub, each service), on the caller's path."""
        table = daemontable.table(self.site, self.public_port,
                                  os.environ.get("PATH", "/usr/bin:/bin"))
        return {d.name: d for d in table}

    def pidfile(self, d: Daemon) -> Path:
        return self.home.pidfile(d.pid_name)

    def _spawn(self, d: Daemon) -> None:
        """Start ``d`` as the caller, with the caller's environment and the table's."""
        daemons.spawn(list(d.argv), self.home.logfile(d.log_name), self.pidfile(d),
                      env=d.process_env(dict(os.environ)), cwd=d.cwd)

    def start_proxy(self) -> bool:
        """Start the proxy unless it runs; True when it was started (it has no routes yet)."""
        proxy = self.daemons()[PROXY]
        if daemons.read_pid(self.pidfile(proxy)):
            return False
        if not shutil.which(proxy.argv[0]):
            raise RuntimeError("configurable-http-proxy is not installed (npm install -g "
                               "configurable-http-proxy)")
        self._spawn(proxy)
        daemons.wait_until(
            lambda: _answers(f"http://127.0.0.1:{self.site.proxy_api_port}/api/routes") or
            _answers(self.url), "configurable-http-proxy", 30)
        return True

    def sync_routes(self) -> int:
        """Have the hub put every route into the proxy now (the reconciler's token, scope
        ``proxy``: :func:`workbench.reconcile.sync_routes`); the number of routes then."""
        from ..hubapi import HubClient
        from ..reconcile import sync_routes
        return sync_routes(HubClient(self.site.hub_api_url,
                                     self.site.service_token("workbench-reconciler"),
                                     timeout=30))

    def start_hub(self, timeout: float = 90) -> None:
        hub = self.daemons()[HUB]
        if not daemons.read_pid(self.pidfile(hub)):
            hub.cwd.mkdir(parents=True, exist_ok=True)
            self._spawn(hub)
        daemons.wait_until(lambda: _answers(self.url + "hub/api/"), "JupyterHub", timeout)

    @staticmethod
    def write_lab_overrides() -> Path:
        """JupyterLab settings of the single-user environment: no news fetched from the
        internet (compute nodes are offline)."""
        path = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        settings = json.loads(path.read_text()) if path.exists() else {}
        notification = settings.setdefault("@jupyterlab/apputils-extension:notification", {})
        notification["fetchNews"] = "false"
        path.write_text(json.dumps(settings, indent=2) + "\n")
        return path

    def start_services(self, names: list[str] | None = None) -> list[str]:
        """Start every hub service (:mod:`workbench.services`), or only those in ``names``,
        that is not running, each a daemon with its own pid file and log; returns the names
        started."""
        started = []
        table = self.daemons()
        for service in self.site.services():
            if names is not None and service.name not in names:
                continue
            d = table[service.name]
            if daemons.read_pid(self.pidfile(d)):
                continue
            self._spawn(d)
            started.append(service.name)
        return started

    def wait_services(self, names: list[str], timeout: float = 120.0) -> None:
        """Until each of the services ``names`` that listens answers at its own address
        (TimeoutError naming the first that does not)."""
        for service in self.site.services():
            url = service.url(self.site.hub_ip)
            if service.name in names and url:
                daemons.wait_until(lambda u=url + service.prefix: _answers(u),
                                   f"service {service.name} at {url}", timeout)

    def stop_services(self) -> list[str]:
        return [s.name for s in self.site.services()
                if daemons.stop(s.name, self.home.pidfile(s.name))]

    def service_status(self) -> list[dict]:
        """Each service: name, running (pid alive), url, and whether it answers there."""
        out = []
        for s in self.site.services():
            url = s.url(self.site.hub_ip)
            row = {"name": s.name, "running": bool(daemons.read_pid(self.home.pidfile(s.name))),
                   "url": url and url + s.prefix, "log": str(self.home.logfile(s.name))}
            if url:
                row["answers"] = _answers(url + s.prefix)
            out.append(row)
        return out

    def pidfiles(self) -> dict[str, Path]:
        return {d.pid_name: self.pidfile(d) for d in self.daemons().values()}

    def up(self) -> None:
        self.write_lab_overrides()
        new_proxy = self.start_proxy()
        self.start_hub()
        if new_proxy:  # a proxy restarted under a running hub: the sessions' routes, now
            log.info("the proxy was restarted: %d routes restored", self.sync_routes())
        # back only once each service it started answers: `up` and `restart` hand back a
        # factory whose pages work, not the proxy's 503 of a service still starting
        self.wait_services(self.start_services())

    def is_up(self) -> bool:
        return bool(daemons.read_pid(self.pidfile(self.daemons()[HUB]))) and _answers(
            self.url + "hub/api/")

    def restart(self) -> None:
        """Stop the hub and its services and start them again: new code and config take
        effect; the proxy, the sessions and their jobs keep running."""
        self.stop_services()
        daemons.stop("jupyterhub", self.pidfile(self.daemons()[HUB]))
        self.up()

    def down(self) -> list[str]:
        stopped = self.stop_services()
        table = self.daemons()
        if daemons.stop("jupyterhub", self.pidfile(table[HUB])):
            stopped.append("jupyterhub")
        if daemons.stop("configurable-http-proxy", self.pidfile(table[PROXY])):
            stopped.append("configurable-http-proxy")
        return stopped
