"""Fixtures of the workbench's tests.

Two tiers: ``tests/unit`` needs nothing running; ``tests/integration`` and ``tests/browser``
run against the real local AI Factory that ``./bootstrap.sh test`` starts (Slurm cluster and
hub). An integration test never skips because the cluster is missing: it fails and says so.

Fixtures:
- ``factory_home``: the :class:`~workbench.paths.FactoryHome` of the local AI Factory.
- ``slurm``: a :class:`~workbench.slurm.SlurmClient` for the local cluster (fails if down).
- ``demo_password``: the demo users' password (root-only file).
- ``hub_url``: the hub's public URL, e.g. ``http://127.0.0.1:8000/``; fails if the hub is down.
- ``hub_api``: ``hub_api(user)`` gives a ``requests.Session`` authenticated as ``user``
  against ``{hub_url}hub/api``; every server it started is stopped after the test.
- ``browser_login``: ``browser_login(user)`` gives a ``requests.Session`` logged in through
  the hub's login form, with cookies, as a browser is.
- ``wait_for``: ``wait_for(check, what, timeout=QUEUE_TIMEOUT)`` polls until ``check()`` is
  truthy and returns its value.

On a failing test that touched Slurm, ``sinfo``, ``squeue`` and ``sacct`` are printed.
"""

from __future__ import annotations

import subprocess
import time

import pytest
import requests

from tests.hubsessions import form_login, token
from workbench.demo.hub import LocalHub
from workbench.paths import FactoryHome
from workbench.slurm import SlurmClient, SlurmError, queries

#: the one timeout for waits on the queue and on servers, in seconds
QUEUE_TIMEOUT = 120


@pytest.fixture(scope="session")
def factory_home() -> FactoryHome:
    return FactoryHome.from_env()


@pytest.fixture(scope="session")
def slurm(factory_home) -> SlurmClient:
    client = SlurmClient(slurm_conf=str(factory_home.slurm_conf))
    try:
        client.run(queries.ping())
    except SlurmError as e:
        pytest.fail(f"the local Slurm cluster is not up (run ./bootstrap.sh): {e}")
    return client


@pytest.fixture(scope="session")
def demo_password(factory_home) -> str:
    return factory_home.demo_password_file.read_text().strip()


@pytest.fixture(scope="session")
def hub_url(slurm) -> str:
    hub = LocalHub()
    if not hub.is_up():
        pytest.fail(f"the hub is not answering at {hub.url} (run ./bootstrap.sh)")
    return hub.url


def _poll(check, what: str, timeout: float = QUEUE_TIMEOUT, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout} s")
        time.sleep(interval)


@pytest.fixture
def wait_for():
    return _poll


@pytest.fixture
def hub_api(hub_url, demo_password):
    sessions = []

    def login(user: str) -> requests.Session:
        s = token(hub_url, user, demo_password, "workbench tests")
        s.base, s.user = s.hub, user
        sessions.append(s)
        return s

    yield login
    for s in sessions:
        s.delete(f"{s.base}/users/{s.user}/server")
        _poll(lambda s=s: not s.get(f"{s.base}/users/{s.user}").json()["servers"],
              f"{s.user}'s server stopped", 60)


@pytest.fixture
def browser_login(hub_url, demo_password):
    """``browser_login(user)``: a requests session logged in through the hub's form, as a
    browser is (cookies, OAuth redirects)."""
    return lambda user: form_login(hub_url, user, demo_password)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "slurm" in item.fixturenames:
        env = {"SLURM_CONF": str(FactoryHome.from_env().slurm_conf), "PATH": "/usr/bin:/bin"}
        for argv in (["sinfo"], ["squeue"], ["sacct", "-a", "-X", "-S", "now-1hour",
                                              "-o", "JobID,User,Account,Partition,State,"
                                              "ExitCode,NodeList,AllocTRES%60"]):
            proc = subprocess.run(argv, capture_output=True, text=True, env=env)
            report.sections.append((" ".join(argv[:1]), proc.stdout + proc.stderr))
