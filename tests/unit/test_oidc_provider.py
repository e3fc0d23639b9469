"""The demo's OpenID provider (workbench/demo/oidc): the real ``oidc-provider`` under node,
driven over HTTP as a browser and JupyterHub's GenericOAuthenticator drive it (authorization
code flow, the login page, the token endpoint, userinfo). Needs Node.js and npm, nothing of
the running factory: each test starts its own provider on a free port in ``tmp_path``.

The node packages are installed once into /opt/aifactory/oidc-provider (shared with the
site-demo profile, so CI installs them once) or, where that is not writable, a temporary dir.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import shutil
import socket
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests

from workbench.demo.oidc import DEFAULT_INSTALL_DIR, DemoProvider, install


@pytest.fixture(scope="module", autouse=True)
def node_is_there():
    """The suite never skips: bootstrap.sh installs Node.js and npm, so their absence fails."""
    missing = [c for c in ("node", "npm") if shutil.which(c) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not installed: the demo's OpenID provider is a "
                    "node program (./bootstrap.sh installs Debian's nodejs and npm)")

HUB_CALLBACK = "http://127.0.0.1:9/hub/oauth_callback"  # nothing listens: never followed
SUPPORT = "urn:geant:example.eu:group:aifactory:support"


@pytest.fixture(scope="session")
def install_dir(tmp_path_factory) -> Path:
    target = DEFAULT_INSTALL_DIR
    writable = target if target.exists() else target.parent
    if not os.access(writable, os.W_OK):
        target = tmp_path_factory.mktemp("oidc-provider")
    install(target)
    return target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def provider(tmp_path, install_dir):
    port = _free_port()
    p = DemoProvider(home=tmp_path / "oidc", issuer=f"http://127.0.0.1:{port}", port=port)
    p.write_config(
        clients=[
            # GenericOAuthenticator's default: the secret in the form body, PKCE S256
            {"client_id": "hub", "client_secret": "hub-secret", "redirect_uris": [HUB_CALLBACK]},
            {"client_id": "hub-basic", "client_secret": "basic-secret",
             "redirect_uris": [HUB_CALLBACK], "token_endpoint_auth_method": "client_secret_basic"},
        ],
        accounts={
            "bob": {"password": "bob-pw", "claims": {
                "preferred_username": "bob", "name": "Bob Builder", "email": "bob@example.eu",
                "eduperson_entitlement": ["urn:geant:example.eu:group:project:p1"]}},
            "sam": {"password": "sam-pw", "claims": {
                "preferred_username": "sam", "name": "Sam Support",
                "eduperson_entitlement": [SUPPORT]}},
        })
    p.start(install_dir)
    yield p
    p.stop()


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _follow(session: requests.Session, response: requests.Response) -> requests.Response | str:
    """Follow redirects as a browser does, stopping at the hub's callback: its URL, or the
    page where the redirects end."""
    for _ in range(10):
        if not response.is_redirect:
            return response
        location = urljoin(response.url, response.headers["Location"])
        if location.startswith(HUB_CALLBACK):
            return location
        response = session.get(location, allow_redirects=False, timeout=10)
    raise AssertionError(f"more than 10 redirects, last {response.url}")


def _authorize(session, provider, client_id="hub", challenge=None):
    doc = provider.discovery()
    params = {"client_id": client_id, "redirect_uri": HUB_CALLBACK, "response_type": "code",
              "scope": "openid profile eduperson_entitlement", "state": "st4te"}
    if challenge:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    r = session.get(doc["authorization_endpoint"], params=params, allow_redirects=False,
                    timeout=10)
    return _follow(session, r)


def _submit(session, page: requests.Response, username: str, password: str):
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    r = session.post(urljoin(page.url, action), data={"username": username,
                     "password": password}, allow_redirects=False, timeout=10)
    return _follow(session, r)


def _login(provider, username, password, client_id="hub", challenge=None) -> str:
    """A fresh browser logs in; the callback URL the provider sends it to."""
    session = requests.Session()
    page = _authorize(session, provider, client_id, challenge)
    callback = _submit(session, page, username, password)
    assert isinstance(callback, str), f"no redirect to the hub, got:\n{callback.text}"
    return callback


def _code(provider, callback: str) -> str:
    query = parse_qs(urlsplit(callback).query)
    assert query["state"] == ["st4te"] and query["iss"] == [provider.issuer]
    return query["code"][0]


def _userinfo(provider, access_token: str) -> dict:
    r = requests.get(provider.discovery()["userinfo_endpoint"], timeout=10,
                     headers={"Authorization": f"Bearer {access_token}"})
    r.raise_for_status()
    return r.json()


def test_discovery_lists_the_endpoints_and_scopes(provider):
    doc = provider.discovery()
    base = provider.issuer
    assert doc["issuer"] == base
    assert doc["authorization_endpoint"] == f"{base}/auth"
    assert doc["token_endpoint"] == f"{base}/token"
    assert doc["userinfo_endpoint"] == f"{base}/me"
    assert requests.get(doc["jwks_uri"], timeout=10).json()["keys"][0]["kty"] == "RSA"
    assert {"openid", "profile", "email", "eduperson_entitlement"} <= set(
        doc["scopes_supported"])
    assert "eduperson_entitlement" in doc["claims_supported"]
    assert {"client_secret_basic", "client_secret_post"} <= set(
        doc["token_endpoint_auth_methods_supported"])


def test_bob_logs_in_as_the_hub_does(provider):
    """The login page, then the code at the hub's callback, exchanged with the secret in the
    body and PKCE (GenericOAuthenticator 17's defaults); userinfo has bob's claims."""
    session = requests.Session()
    verifier, challenge = _pkce()
    page = _authorize(session, provider, challenge=challenge)
    assert page.status_code == 200
    assert "<h1>AI Factory login (demo identity provider)</h1>" in page.text
    assert 'name="username"' in page.text and 'name="password"' in page.text
    assert '<button type="submit">Log in</button>' in page.text
    callback = _submit(session, page, "bob", "bob-pw")
    assert isinstance(callback, str), callback.text
    # the request GenericOAuthenticator.get_token_info sends (basic_auth False)
    token = requests.post(provider.discovery()["token_endpoint"], timeout=10, headers={
        "Accept": "application/json", "User-Agent": "JupyterHub",
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
    }, data=urlencode({
        "grant_type": "authorization_code", "code": _code(provider, callback),
        "redirect_uri": HUB_CALLBACK, "code_verifier": verifier,
        "client_id": "hub", "client_secret": "hub-secret"}))
    assert token.status_code == 200, token.text
    assert token.json()["token_type"] == "Bearer" and token.json()["expires_in"] <= 3600
    info = _userinfo(provider, token.json()["access_token"])
    assert info["sub"] == "bob" and info["preferred_username"] == "bob"
    assert info["name"] == "Bob Builder"
    assert info["eduperson_entitlement"] == ["urn:geant:example.eu:group:project:p1"]
    assert "email" not in info  # the email scope was not asked for


def test_a_wrong_secret_gets_no_token(provider):
    callback = _login(provider, "bob", "bob-pw")
    r = requests.post(provider.discovery()["token_endpoint"], timeout=10, data={
        "grant_type": "authorization_code", "code": _code(provider, callback),
        "redirect_uri": HUB_CALLBACK, "client_id": "hub", "client_secret": "not-it"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


@pytest.mark.parametrize("username,password", [("bob", "sam-pw"), ("nobody", "bob-pw")])
def test_a_wrong_password_logs_nobody_in(provider, username, password):
    session = requests.Session()
    page = _authorize(session, provider)
    again = _submit(session, page, username, password)
    assert isinstance(again, requests.Response), f"got a code: {again}"
    assert again.status_code == 200 and "Wrong username or password" in again.text
    assert 'name="password"' in again.text
    # the same browser is still not logged in: it gets the login page, not a code
    page = _authorize(session, provider)
    assert isinstance(page, requests.Response) and 'name="password"' in page.text
    assert "Wrong username or password" not in page.text


def test_a_removed_entitlement_is_gone_at_the_next_login(provider):
    def login_as_sam():
        callback = _login(provider, "sam", "sam-pw", client_id="hub-basic")
        token = requests.post(provider.discovery()["token_endpoint"], timeout=10,
                              auth=("hub-basic", "basic-secret"),
                              data={"grant_type": "authorization_code", "redirect_uri":
                                    HUB_CALLBACK, "code": _code(provider, callback)})
        assert token.status_code == 200, token.text
        return token.json()["access_token"]

    before = login_as_sam()
    assert _userinfo(provider, before)["eduperson_entitlement"] == [SUPPORT]
    provider.set_entitlements("sam", [])
    assert not _userinfo(provider, login_as_sam()).get("eduperson_entitlement")
    assert not _userinfo(provider, before).get("eduperson_entitlement")  # read at each call


def test_passwords_stay_in_private_files(provider):
    assert provider.home.stat().st_mode & 0o777 == 0o700
    for f in (provider.config_file, provider.accounts_file, provider.home / "jwks.json"):
        assert f.stat().st_mode & 0o777 == 0o600, f
    pid = provider.pidfile.read_text().split()[0]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert argv[-2:] == [str(provider.config_file).encode(), b""]
    for secret in (b"hub-secret", b"basic-secret", b"bob-pw", b"sam-pw"):
        assert not any(secret in a for a in argv)
