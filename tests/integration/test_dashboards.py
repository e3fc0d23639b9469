"""The two dashboards behind the real hub: who gets in is the hub's decision (403 before any
kernel), a viewer cannot run code through the service, and a Slurm that does not answer gives
messages, not errors."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from workbench.dashboards.source import DashboardSettings, DashboardSource

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

SUPPORT, MANAGER = "support-dashboard", "manager-dashboard"


def _open(s: requests.Session, hub_url: str, service: str) -> requests.Response:
    return s.get(f"{hub_url}services/{service}/", timeout=120)


@pytest.mark.parametrize("user,allowed", [("alice", ()), ("sam", (SUPPORT,)),
                                          ("maria", (MANAGER,)),
                                          ("admin", (SUPPORT, MANAGER))])
def test_the_hub_decides_who_opens_which_dashboard(browser_login, hub_url, slurm, user,
                                                   allowed):
    s = browser_login(user)
    for service in (SUPPORT, MANAGER):
        r = _open(s, hub_url, service)
        if service in allowed:
            assert r.status_code == 200, (user, service, r.status_code)
            assert "/voila/render/" in r.url and "Traceback" not in r.text
        else:
            # refused at the hub's OAuth step: the service never saw the user
            assert r.status_code == 403, (user, service, r.status_code)
            assert "/hub/api/oauth2/authorize" in r.url
    home = s.get(f"{hub_url}hub/home").text
    for service in (SUPPORT, MANAGER):
        assert (f"wb-link-{service}" in home) == (service in allowed)


def test_a_viewer_cannot_run_code_through_the_service(browser_login, hub_url, slurm):
    s = browser_login("sam")
    page = _open(s, hub_url, SUPPORT)
    assert page.status_code == 200
    base = f"{hub_url}services/{SUPPORT}/"
    xsrf = next((c.value for c in s.cookies if c.name == "_xsrf" and SUPPORT in c.path), "")
    # the Jupyter Server API is closed: kernels, contents, sessions, files, terminals, Lab
    assert s.post(f"{base}api/kernels", headers={"X-XSRFToken": xsrf}).status_code == 403
    for path in ("api/kernels", "api/contents", "api/sessions", "files/support.ipynb"):
        assert s.get(base + path).status_code == 403, path
    for path in ("lab", "tree", "api/terminals", "voila/render/programmes.ipynb"):
        assert s.get(base + path).status_code == 404, path
    # the page's own kernel: widget messages pass, code does not run
    kernel_id = re.search(r'"kernelId": "([0-9a-f-]+)"', page.text).group(1)
    marker = Path(f"/tmp/wb-dashboard-pwned-{uuid.uuid4().hex}")
    cookie = "; ".join(f"{c.name}={c.value}" for c in s.cookies
                       if c.path in ("/", f"/services/{SUPPORT}/"))
    replies = asyncio.run(_talk(hub_url.replace("http", "ws") +
                                f"services/{SUPPORT}/api/kernels/{kernel_id}/channels",
                                cookie, marker))
    assert "kernel_info_reply" in replies  # the socket works
    assert "execute_reply" not in replies and not marker.exists()


async def _talk(url: str, cookie: str, marker: Path) -> list[str]:
    conn = await websocket_connect(HTTPRequest(url, headers={"Cookie": cookie}))

    def msg(msg_type, content):
        return json.dumps({"header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type,
                                      "username": "sam", "session": uuid.uuid4().hex,
                                      "version": "5.3", "date": datetime.now(UTC).isoformat()},
                           "parent_header": {}, "metadata": {}, "channel": "shell",
                           "content": content, "buffers": []})
    await conn.write_message(msg("execute_request", {
        "code": f"open({str(marker)!r}, 'w').write('x')", "silent": False,
        "store_history": False, "user_expressions": {}, "allow_stdin": False}))
    await conn.write_message(msg("kernel_info_request", {}))
    seen = []
    deadline = asyncio.get_running_loop().time() + 10
    while asyncio.get_running_loop().time() < deadline:
        try:
            raw = await asyncio.wait_for(conn.read_message(), 2)
        except TimeoutError:
            break
        if raw is None:
            break
        if isinstance(raw, str):
            seen.append(json.loads(raw)["header"]["msg_type"])
    conn.close()
    return seen


def test_slurm_accounting_down_gives_messages_and_the_rest_of_the_page(tmp_path, slurm,
                                                                       factory_home):
    # the real cluster, with slurmdbd out of reach (its port closed): sacct fails as it does
    # when slurmdbd is down, the controller still answers
    conf = tmp_path / "slurm.conf"
    conf.write_text(re.sub(r"(?m)^AccountingStoragePort=.*$", "AccountingStoragePort=1",
                           factory_home.slurm_conf.read_text()))
    source = DashboardSource(DashboardSettings(cache_dir=str(tmp_path / "cache"),
                                               slurm_conf=str(conf)))
    today = datetime.now(UTC).date()
    view = source.manager(today - timedelta(days=6), today)
    assert view.range is not None
    assert "Slurm" in view.budgets.message and view.budgets.table is None
    assert "Slurm accounting (sacct) failed" in view.usage.message
    assert view.utilisation.table is not None  # from sinfo: still drawn
    support = source.support()
    assert support.sessions.table is not None and not support.sessions.message
    assert support.nodes.table is not None and len(support.nodes.table) >= 1
    assert "Slurm accounting" in support.failures.message
    assert source.user("nosuchuser").message == "There is no user 'nosuchuser' on this cluster."


def test_restarting_a_dashboard_service_returns_once_it_answers(browser_login, hub_url):
    """``workbench restart NAME`` gives the service back answering: maria's page comes at
    once, not the proxy's 503 of a service still starting."""
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "restart", MANAGER],
                         capture_output=True, text=True, check=True).stdout
    assert f"Restarted: {MANAGER}" in out
    r = browser_login("maria").get(f"{hub_url}services/{MANAGER}/", timeout=60)
    assert r.status_code == 200 and "voila" in r.text.lower(), r.status_code
