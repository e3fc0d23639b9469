"""The ``metrics`` hub service: ``GET /services/metrics/metrics`` in Prometheus' text format.

Who may scrape is the hub's decision: a token with the ``metrics`` role (``read:metrics``
and this service's access scope; :mod:`workbench.services`), as for the hub's own
``/hub/metrics``. Without a token 401, with one lacking the role 403.

Every metric is declared in :mod:`workbench.metrics` and read from the dashboards' shared
caches and the audit and help stores, in the background (every ``refresh_every`` seconds,
one reading at a time): a reading runs Slurm only when a cache entry is older than its max
age, as a dashboard viewer would, and checks the services at most every
``service_check_every`` seconds. A scrape shows the last reading at once and never waits for
Slurm: while the controller does not answer it says so (``workbench_slurm_controller_up 0``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

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
    """Yields the families of the readings :meth:`Exporter.scrape` set before the exposition."""

    def __init__(self):
        self.readings: metrics.Readings | None = None

    def collect(self):
        if self.readings is not None:
            yield from metrics.families(self.readings)


class Exporter:
    """The service's state: its registry, the Slurm calls it counted, the sessions' waits
    observed, the last reading and the services' last check.

    Readings are taken in the background (:meth:`start`: every ``refresh_every`` seconds, one
    at a time, in a thread of their own, since a Slurm command may wait its whole timeout); a
    scrape (:meth:`scrape`) only shows the last one, and never waits for Slurm. While a squeue
    or sinfo of a reading has waited longer than ``answer_within`` seconds, the scrape says
    the controller is down (``workbench_slurm_controller_up 0``) without waiting for it."""

    def __init__(self, site: Site, hub_id: str, source: DashboardSource, audit: AuditLog,
                 help_store, calls, registry: CollectorRegistry, check_every: float,
                 check_timeout: float, refresh_every: float = 5.0,
                 answer_within: float = 5.0):
        self.site, self.hub_id, self.source = site, hub_id, source
        self.audit, self.help_store, self.calls = audit, help_store, calls
        self.registry = registry
        self.collector = _Collector()
        registry.register(self.collector)
        self.waits = metrics.SessionWaits(registry)
        self.check_every, self.check_timeout = check_every, check_timeout
        self.refresh_every, self.answer_within = refresh_every, answer_within
        self.readings: metrics.Readings | None = None
        self._services: dict[str, bool] = {}
        self._checked = float("-inf")
        self._lock = asyncio.Lock()
        # one thread: a reading that waits on Slurm never has a second one beside it
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="metrics-reading")
        self._task: asyncio.Task | None = None

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

    async def refresh(self) -> metrics.Readings:
        """Take one reading (the services' check, the caches, the stores) and keep it; a
        second call while one runs waits for it and takes the next."""
        async with self._lock:
            services = await self.services()
            self.readings = await asyncio.get_running_loop().run_in_executor(
                self._thread, metrics.read, self.source, self.hub_id, self.audit,
                self.help_store, services, self.waits)
            return self.readings

    async def _refresh_forever(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.refresh()
            except Exception:  # a reading that fails is logged; the next one is taken
                log.exception("metrics: the reading failed; the last one is shown")
            took = time.monotonic() - started
            if took > self.refresh_every:
                log.warning("metrics: a reading took %.1f s (refresh every %.1f s)", took,
                            self.refresh_every)
            await asyncio.sleep(max(self.refresh_every - took, 0.0))

    def start(self) -> None:
        """Take readings in the background, from the running event loop, until :meth:`stop`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._refresh_forever())

    def stop(self, wait: bool = False) -> None:
        """Take no more readings; one under way finishes in its thread, within the Slurm
        client's timeouts (``wait``: return only then)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._thread.shutdown(wait=wait, cancel_futures=True)

    def shown(self) -> metrics.Readings:
        """What a scrape shows now: the last reading, the controller down while a squeue or
        sinfo has waited longer than ``answer_within``."""
        r = self.readings or metrics.Readings(self.hub_id, controller_up=None,
                                              services=dict(self._services))
        client = getattr(self.source, "client", None)
        waited = client.waiting_since(metrics.CONTROLLER_COMMANDS) \
            if isinstance(client, metrics.CountingSlurmClient) else None
        if waited is not None and waited > self.answer_within:
            r = replace(r, controller_up=False)
        return r

    def scrape(self) -> bytes:
        """The exposition of the last reading; reads nothing itself."""
        self.collector.readings = self.shown()
        return generate_latest(self.registry)


class MetricsHandler(APIHandler):
    async def get(self):
        body = self.settings["exporter"].scrape()
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

    refresh_every = Float(
        5.0, min=0.5, max=300,
        help="Seconds between the background readings a scrape shows (the shared caches, the "
        "stores, the services' check); one at a time, so a reading that waits on Slurm delays "
        "the next. Example: 5.").tag(config=True)

    controller_answer_within = Float(
        5.0, min=0.1,
        help="Seconds a reading's squeue or sinfo may wait for the controller before a scrape "
        "says it is down (workbench_slurm_controller_up 0) without waiting for the command's "
        "own timeout (DashboardSettings.slurm_timeout). Example: 5.").tag(config=True)

    aliases = {"hub-id": "MetricsService.hub_id"}

    def make_exporter(self, site: Site | None = None,
                      settings: DashboardSettings | None = None) -> Exporter:
        from workbench.help.store import HelpStore
        registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=registry)
        calls = metrics.slurm_calls(registry)
        settings = settings or DashboardSettings()
        client = metrics.CountingSlurmClient(calls, slurm_conf=settings.slurm_conf,
                                             timeout=settings.slurm_timeout)
        # the stores where the dashboards read them (DashboardSettings.audit_db, help_db)
        return Exporter(site or Site.from_env(), self.hub_id,
                        DashboardSource(settings, client), AuditLog(settings.audit_db),
                        HelpStore(settings.help_db), calls, registry,
                        self.service_check_every, self.service_check_timeout,
                        self.refresh_every, self.controller_answer_within)

    def start(self):
        exporter = self.make_exporter()
        serve(ROUTES, {"exporter": exporter}, started=exporter.start)


ROUTES = [(r"metrics", MetricsHandler)]


def main(argv=None):
    MetricsService.launch_instance(argv)


__all__ = ["ROUTES", "Exporter", "MetricsService", "main"]
