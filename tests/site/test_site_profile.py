"""The workbench as a site runs it, on this machine: login through a real OpenID provider
(npm oidc-provider) with oauthenticator, the hub, audit and help in Debian's PostgreSQL,
roles from the token's entitlements, the same Slurm cluster."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import expect

from tests.browser.helpers import ARTIFACTS
from workbench.demo.sitedemo import ENTITLEMENTS, STRANGER
from workbench.slurm import queries
from workbench.tags import parse_job_tag

WORKBENCH = str(Path(sys.executable).parent / "workbench")
BOB_SESSION = {"partition": "gpu", "account": "research-medai", "gpus": 1, "cpus": 1,
               "memory": "2G", "runtime": "00:30:00"}


def browser_login(page, hub_url: str, user: str, password: str) -> None:
    """Through the hub's login button to the provider's page, and the form there."""
    page.goto(f"{hub_url}hub/oauth_login")
    expect(page.get_by_role("heading", name=re.compile("AI Factory login"))).to_be_visible()
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.get_by_role("button", name="Log in").click()


def test_bob_logs_in_through_the_provider_and_spawns_on_his_project(
        page, hub_url, demo_password, oidc_login, as_user, slurm, site_demo):
    bob = as_user(oidc_login("bob"))  # stops bob's server after the test
    browser_login(page, hub_url, "bob", demo_password)
    page.wait_for_url(re.compile(r".*/hub/spawn.*"))
    accounts = page.locator("#wb-account option")
    expect(accounts).to_have_count(2)  # his projects, from the allocations file and Slurm
    page.select_option("#wb-partition", "gpu")
    page.select_option("#wb-account", "research-medai")
    page.fill("#wb-gpus", "1")
    page.fill("#wb-cpus", "1")
    page.fill("#wb-memory", "2G")
    page.fill("#wb-runtime", "00:30:00")
    page.click("form input[type=submit], form button[type=submit]")
    page.wait_for_url(re.compile(r".*/user/bob/lab.*"), timeout=180_000)
    # JupyterLab itself drawn, served by bob's job (not only its URL)
    expect(page.locator(".jp-LabShell")).to_be_visible(timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "site-bob-lab.png"))
    assert bob.get(f"{bob.base}/users/bob").json()["servers"][""]["ready"]
    sessions = [j for j in slurm.run(queries.jobs()) if j.user == "bob" and j.state.is_running
                and (parse_job_tag(j.comment) or {}).get("server") == ""
                and "session" not in parse_job_tag(j.comment)]
    assert [(j.account, j.partition, j.gpus) for j in sessions] == [("research-medai", "gpu", 1)]


def test_support_follows_the_entitlement_in_the_provider(page, hub_url, demo_password,
                                                        oidc_login, site_demo):
    sam = oidc_login("sam")
    assert sam.get(f"{hub_url}services/support-dashboard/", timeout=120).status_code == 200
    browser_login(page, hub_url, "sam", demo_password)
    page.wait_for_url(re.compile(r".*/hub/.*"))
    page.goto(f"{hub_url}services/support-dashboard/")
    expect(page.locator(".wb-table-sessions")).to_be_visible(timeout=120_000)
    provider = site_demo.provider
    try:
        # bob, a project member, made support in the provider, then taken out again
        provider.set_entitlements("bob", [ENTITLEMENTS["support"]])
        bob = oidc_login("bob")
        assert "support" in bob.get(f"{hub_url}hub/api/user").json()["groups"]
        assert bob.get(f"{hub_url}services/support-dashboard/", timeout=120).status_code == 200
        provider.set_entitlements("bob", [])
        bob = oidc_login("bob")  # his next login: still a member of his projects, not support
        assert "support" not in bob.get(f"{hub_url}hub/api/user").json()["groups"]
        r = bob.get(f"{hub_url}services/support-dashboard/", timeout=120)
        assert r.status_code == 403, r.text[:300]
        # sam is staff only by the entitlement: without it, in no project, he is refused
        provider.set_entitlements("sam", [])
        refused = oidc_login("sam", expect=403)
        assert "sam is not a member of any project" in refused.text
    finally:
        provider.set_entitlements("sam", [ENTITLEMENTS["support"]])
        provider.set_entitlements("bob", [])
    assert "support" in oidc_login("sam").get(f"{hub_url}hub/api/user").json()["groups"]


def test_an_account_without_a_unix_user_is_refused_with_a_page_and_gets_no_hub_user(
        page, hub_url, demo_password, reader, site_demo):
    browser_login(page, hub_url, STRANGER, demo_password)
    expect(page.locator(".error h1")).to_contain_text(
        f"There is no account '{STRANGER}' on the cluster", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "site-refused.png"))
    assert reader.get(f"{reader.base}/users/{STRANGER}").status_code == 404


def test_a_user_called_admin_is_not_an_admin(oidc_login, as_user, reader, hub_url,
                                             site_demo):
    refused = oidc_login("admin", expect=403)  # in no project, no staff entitlement
    assert "admin is not a member of any project" in refused.text
    site_demo.provider.set_entitlements("admin", [ENTITLEMENTS["support"]])
    try:
        s = oidc_login("admin")  # let in as support: still no hub admin
        assert reader.get(f"{reader.base}/users/admin").json()["admin"] is False
        api = as_user(s)
        assert api.get(f"{api.base}/user").json()["admin"] is False
        # what only an admin may: a token for someone else
        assert api.post(f"{api.base}/users/bob/tokens", json={}).status_code == 403
    finally:
        site_demo.provider.set_entitlements("admin", [])


def test_the_hub_audit_and_help_live_in_postgresql_and_survive_a_hub_restart(
        oidc_login, as_user, reader, hub_url, site_demo, wait_for):
    bob = as_user(oidc_login("bob"))
    r = bob.post(f"{bob.base}/users/bob/server", json={"user_options": BOB_SESSION})
    assert r.status_code in (201, 202), r.text
    wait_for(lambda: (bob.get(f"{bob.base}/users/bob").json()["servers"].get("") or {})
             .get("ready"), "bob's server ready", 180)
    share = bob.post(f"{bob.base}/shares/bob/", json={"user": "sam"})
    assert share.status_code == 200, share.text
    try:
        _restart_keeps_it_all(bob, hub_url, site_demo)
    finally:
        bob.delete(f"{bob.base}/shares/bob/")  # the share goes with the test


def _restart_keeps_it_all(bob, hub_url, site_demo):
    """The tables in PostgreSQL, then a hub restart that keeps the session, the share and
    every audit record."""
    pg = site_demo.postgres
    tables = set(pg.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                        "workbench").split())
    assert {"users", "servers", "shares", "api_tokens", "audit", "help_requests"} <= tables
    audit_before = int(pg.sql("SELECT count(*) FROM audit", "workbench"))
    submits = pg.sql("SELECT subject FROM audit WHERE action = 'session.submit'", "workbench")
    assert "bob" in submits.split()  # the spawn, in the site's database
    assert "bob" in pg.sql("SELECT name FROM users", "workbench").split()

    out = subprocess.run([WORKBENCH, "restart"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr

    model = bob.get(f"{bob.base}/users/bob").json()["servers"][""]
    assert model["ready"]  # the same session, re-adopted from PostgreSQL
    assert bob.get(f"{hub_url}user/bob/api/status").status_code == 200
    shared = bob.get(f"{bob.base}/shares/bob/").json()["items"]
    assert [s["user"]["name"] for s in shared if s.get("user")] == ["sam"]
    assert int(pg.sql("SELECT count(*) FROM audit", "workbench")) >= audit_before
