"""The ``metrics`` hub service: ``GET /services/metrics/metrics`` in Prometheus' text format.

Who may scrape is the hub's decision: a token with the ``metrics`` role (``read:metrics``
and this service's access scope; :mod:`workbench.services`), as for the hub's own
``/hub/metrics``. Without a token 401, with one lacking the role 403.

Every metric is declared in :mod:`workbench.metrics` and read from the dashboards' shared
caches and the audit and help stores; a scrape runs Slurm only when a cache entry is older
than its max age, as a dashboard viewer would, and checks the services at most every
``service_check_every`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Float, Unicode, default
from traitlets.config import Application

from extensions.hubservice import APIHandler, serve
from workbench import daemons, metrics
from workbench.audit import AuditLog
from workbench.dashboards.source import DashboardSettings, DashboardSource
from workbench.hubconfig import Site

log = logging.getLogger("extensions.metrics")


class _Collector:
    """Yields the families of the exporter's latest readings (set before each exposition)."""

    def __init__(self):
        self.readings: metrics.Readings | None = None

    def collect(self):
        if self.readings is not None:
            yield from metrics.families(self.readings)


class Exporter:
    """The service's state: its registry, the Slurm calls it counted, the sessions' waits
    observed, and the services' last check."""

    def __init__(self, site: Site, hub_id: str, source: DashboardSource, audit: AuditLog,
                 help_store, calls, registry: CollectorRegistry, check_every: float,
                 check_timeout: float):
        self.site, self.hub_id, self.source = site, hub_id, source
        self.audit, self.help_store, self.calls = audit, help_store, calls
        self.registry = registry
        self.collector = _Collector()
        registry.register(self.collector)
        self.waits = metrics.SessionWaits(registry)
        self.check_every, self.check_timeout = check_every, check_timeout
        self._services: dict[str, bool] = {}
        self._checked = float("-inf")
        self._lock = asyncio.Lock()

    async def _answers(self, url: str) -> bool:
        try:
            await AsyncHTTPClient().fetch(url, request_timeout=self.check_timeout,
                                          follow_redirects=False)
        except HTTPClientError as e:  # 599: no connection, timed out
            return e.code < 500
        except OSError:
            return False
        return True

    async def services(self) -> dict[str, bool]:
        """Each registered service up or not, checked at most every ``check_every`` s."""
        if time.monotonic() - self._checked < self.check_every:
            return self._services
        registered = self.site.services()
        checks = []
        for s in registered:
            url = s.url(self.site.hub_ip)
            if url:
                checks.append(self._answers(url + s.prefix))
            else:
                checks.append(asyncio.sleep(0, bool(daemons.read_pid(
                    self.site.home.pidfile(s.name)))))
        answers = await asyncio.gather(*checks)
        self._services = {s.name: up for s, up in zip(registered, answers, strict=True)}
        self._checked = time.monotonic()
        return self._services

    async def scrape(self) -> bytes:
        async with self._lock:
            services = await self.services()
            self.collector.readings = await asyncio.get_running_loop().run_in_executor(
                None, metrics.read, self.source, self.hub_id, self.audit, self.help_store,
                services, self.waits)
            return generate_latest(self.registry)


class MetricsHandler(APIHandler):
    async def get(self):
        body = await self.settings["exporter"].scrape()
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)


class MetricsService(Application):
    """The metrics hub service's settings."""

    name = "workbench-metrics"

    hub_id = Unicode(
        help="Name of the hub whose sessions are counted (the tag its jobs carry, as "
        "SlurmGPUSpawner.hub_id). Default: this machine's host name. Example: 'hub1'.",
    ).tag(config=True)

    @default("hub_id")
    def _default_hub_id(self):
        return socket.gethostname()

    service_check_every = Float(
        10.0, min=0.0,
        help="Seconds one check of the services (an HTTP request to each) serves every "
        "scrape. Example: 10.").tag(config=True)

    service_check_timeout = Float(
        2.0, min=0.1,
        help="Seconds a service may take to answer its check before it counts as down. "
        "Example: 2.").tag(config=True)

    aliases = {"hub-id": "MetricsService.hub_id"}

    def make_exporter(self, site: Site | None = None) -> Exporter:
        from workbench.help.store import HelpStore
        registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=registry)
        calls = metrics.slurm_calls(registry)
        settings = DashboardSettings()
        client = metrics.CountingSlurmClient(calls, slurm_conf=settings.slurm_conf,
                                             timeout=settings.slurm_timeout)
        # the stores where the dashboards read them (DashboardSettings.audit_db, help_db)
        return Exporter(site or Site.from_env(), self.hub_id,
                        DashboardSource(settings, client), AuditLog(settings.audit_db),
                        HelpStore(settings.help_db), calls, registry,
                        self.service_check_every, self.service_check_timeout)

    def start(self):
        serve(ROUTES, {"exporter": self.make_exporter()})


ROUTES = [(r"metrics", MetricsHandler)]


def main(argv=None):
    MetricsService.launch_instance(argv)


__all__ = ["ROUTES", "Exporter", "MetricsService", "main"]
