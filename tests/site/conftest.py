"""The site profile's tier: the local factory started with ``workbench up --profile site-demo``
(Debian's PostgreSQL, the npm ``oidc-provider`` with the demo people, a site file), in front of
the same Slurm cluster. ``./bootstrap.sh test`` runs it after the demo profile's suite; it
fails, never skips, when the factory is in another profile.

Fixtures (besides those of tests/conftest.py):
- ``site_demo``: the :class:`~workbench.demo.sitedemo.SiteDemo` in force (its provider,
  PostgreSQL, files).
- ``oidc_login``: ``oidc_login(user)`` logs ``user`` in through the provider's login page with
  ``requests``, as a browser does, and returns the session (cookies); ``oidc_login(user,
  expect=403)`` for a refused login returns the hub's answer.
- ``as_user``: ``as_user(session)`` gives a ``requests.Session`` with an API token of that
  logged-in user (created with the session's cookie and xsrf token); its servers are
  stopped after the test.
- ``reader``: a session with the reconciler service's own token (reads users and servers).
- ``page``: chromium, as in tests/browser.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin

import pytest
import requests

from tests.browser.conftest import page  # noqa: F401  (the same chromium fixture)
from workbench.demo.sitedemo import SiteDemo, is_site_demo

pytestmark = [pytest.mark.slurm, pytest.mark.hub]


@pytest.fixture(scope="session")
def site_demo():
    demo = SiteDemo()
    if not is_site_demo(demo.home.site_file):
        pytest.fail(f"{demo.home.site_file} is not the site-demo's: run `workbench up "
                    "--profile site-demo` first (./bootstrap.sh test does)")
    return demo


def provider_login(s: requests.Session, hub_url: str, user: str, password: str
                   ) -> requests.Response:
    r = s.get(f"{hub_url}hub/oauth_login", timeout=60)
    assert "/interaction/" in r.url and "AI Factory login" in r.text, (r.url, r.text[:300])
    action = re.search(r'<form[^>]*action="([^"]+)"', r.text).group(1)
    return s.post(urljoin(r.url, action), data={"username": user, "password": password},
                  timeout=120)


@pytest.fixture
def oidc_login(hub_url, demo_password, site_demo):
    def login(user: str, expect: int = 200):
        s = requests.Session()
        r = provider_login(s, hub_url, user, demo_password)
        assert r.status_code == expect, (r.status_code, r.url, r.text[-800:])
        if expect != 200:
            return r
        assert r.url.startswith(hub_url), r.url  # back at the hub, logged in
        return s
    return login


@pytest.fixture
def as_user(hub_url, wait_for):
    made = []

    def token_session(s: requests.Session) -> requests.Session:
        who = s.get(f"{hub_url}hub/api/user", headers={"X-XSRFToken": _xsrf(s)}).json()
        r = s.post(f"{hub_url}hub/api/users/{who['name']}/tokens",
                   json={"note": "site tests", "expires_in": 3600},
                   headers={"X-XSRFToken": _xsrf(s)})
        assert r.status_code == 201, r.text
        api = requests.Session()
        api.headers["Authorization"] = f"token {r.json()['token']}"
        api.base, api.user = f"{hub_url}hub/api", who["name"]
        made.append(api)
        return api

    yield token_session
    for api in made:
        api.delete(f"{api.base}/users/{api.user}/server")
        wait_for(lambda a=api: not a.get(f"{a.base}/users/{a.user}").json().get("servers"),
                 f"{api.user}'s server stopped", 60)


def _xsrf(s: requests.Session) -> str:
    return next((c.value for c in s.cookies if c.name == "_xsrf"), "")


@pytest.fixture
def reader(hub_url, factory_home):
    token = (factory_home.secrets / "service-workbench-reconciler-token").read_text().strip()
    s = requests.Session()
    s.headers["Authorization"] = f"token {token}"
    s.base = f"{hub_url}hub/api"
    return s
