"""Being one of the demo's people on the running hub, for tests and benchmarks: with a hub
token of one's own (:func:`token`, the API and the services' APIs), or logged in through
the hub's form with cookies, as a browser is (:func:`form_login`, the hub's pages)."""

from __future__ import annotations

import requests


def token(hub_url: str, user: str, password: str, note: str) -> requests.Session:
    """A session with a fresh hub token of ``user`` (an hour); ``.hub``: the hub's API,
    ``.access``: the access service's API."""
    r = requests.post(f"{hub_url}hub/api/users/{user}/tokens", timeout=30,
                      json={"auth": {"username": user, "password": password}, "note": note,
                            "expires_in": 3600})
    if r.status_code != 201:
        raise AssertionError(f"no token for {user}: HTTP {r.status_code}: {r.text[:300]}")
    s = requests.Session()
    s.headers["Authorization"] = f"token {r.json()['token']}"
    s.hub, s.access = f"{hub_url}hub/api", f"{hub_url}services/access/api"
    return s


def form_login(hub_url: str, user: str, password: str) -> requests.Session:
    """A session logged in through the hub's form (cookies, OAuth redirects): the hub's
    pages, such as ``/hub/spawn``, answer it as they answer a browser."""
    s = requests.Session()
    s.get(f"{hub_url}hub/login", timeout=30)
    xsrf = next(c.value for c in s.cookies if c.name == "_xsrf")
    r = s.post(f"{hub_url}hub/login", data={"username": user, "password": password,
                                            "_xsrf": xsrf}, timeout=30)
    if not (r.ok and "jupyterhub-session-id" in {c.name for c in s.cookies}):
        raise AssertionError(f"{user} not logged in: HTTP {r.status_code}: {r.text[:300]}")
    return s
