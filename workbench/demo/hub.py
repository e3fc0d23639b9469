"""Start and stop the local AI Factory's configurable-http-proxy and JupyterHub."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

from .. import daemons, services
from ..hubconfig import Site
from ..paths import data_file

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

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.site.process_env(), CONFIGPROXY_AUTH_TOKEN=self.site.proxy_token)
        pgpass = self.home.secrets / "pgpass"  # the site-demo's database password
        if self.site.database and pgpass.exists():
            env["PGPASSFILE"] = str(pgpass)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
        return env

    def start_proxy(self) -> bool:
        """Start the proxy unless it runs; True when it was started (it has no routes yet)."""
        pidfile = self.home.pidfile("proxy")
        if daemons.read_pid(pidfile):
            return False
        chp = shutil.which("configurable-http-proxy")
        if not chp:
            raise RuntimeError("configurable-http-proxy is not installed (npm install -g "
                               "configurable-http-proxy)")
        hub = f"http://{self.site.hub_ip}:{self.site.hub_port}"
        daemons.spawn(
            [chp, "--ip", "", "--port", str(self.public_port),
             "--api-ip", "127.0.0.1", "--api-port", str(self.site.proxy_api_port),
             "--default-target", hub, "--error-target", f"{hub}/hub/error"],
            self.home.logfile("proxy"), pidfile, env=self._env())
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
        pidfile = self.home.pidfile("jupyterhub-daemon")
        if not daemons.read_pid(pidfile):
            self.home.hub.mkdir(parents=True, exist_ok=True)
            config = data_file("jupyterhub_config.py")
            daemons.spawn([sys.executable, "-m", "jupyterhub", "-f", str(config)],
                          self.home.logfile("jupyterhub"), pidfile, env=self._env(),
                          cwd=self.home.hub)
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
        base = self._env()
        base.pop("CONFIGPROXY_AUTH_TOKEN")
        for service in self.site.services():
            if names is not None and service.name not in names:
                continue
            pidfile = self.home.pidfile(service.name)
            if daemons.read_pid(pidfile):
                continue
            # in the state directory, as the hub: never the caller's directory, whose
            # modules (a checkout) would shadow the installed ones
            daemons.spawn(list(service.argv), self.home.logfile(service.name), pidfile,
                          env=services.process_env(service, self.site, base),
                          cwd=self.home.root)
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
        names = ["proxy", "jupyterhub-daemon", *(s.name for s in self.site.services())]
        return {name: self.home.pidfile(name) for name in names}

    def up(self) -> None:
        self.write_lab_overrides()
        new_proxy = self.start_proxy()
        self.start_hub()
        if new_proxy:  # a proxy restarted under a running hub: the sessions' routes, now
            log.info("the proxy was restarted: %d routes restored", self.sync_routes())
        self.start_services()

    def is_up(self) -> bool:
        return bool(daemons.read_pid(self.home.pidfile("jupyterhub-daemon"))) and _answers(
            self.url + "hub/api/")

    def restart(self) -> None:
        """Stop the hub and its services and start them again: new code and config take
        effect; the proxy, the sessions and their jobs keep running."""
        self.stop_services()
        daemons.stop("jupyterhub", self.home.pidfile("jupyterhub-daemon"))
        self.up()

    def down(self) -> list[str]:
        stopped = self.stop_services()
        if daemons.stop("jupyterhub", self.home.pidfile("jupyterhub-daemon")):
            stopped.append("jupyterhub")
        if daemons.stop("configurable-http-proxy", self.home.pidfile("proxy")):
            stopped.append("configurable-http-proxy")
        return stopped
