"""Support and managers in a real browser: the dashboards behind the hub, by role.

sam (support) sees alice's running session in the support dashboard and is refused the
managers' one; maria (manager) sees the projects' used GPU-hours as `workbench allocations
show --json` prints them and downloads a table as CSV; alice sees neither link and is refused
both. Debian's chromium driven by Playwright; screenshots in the test artefacts."""

import csv
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect

from workbench import daemons
from workbench.slurm import queries
from workbench.tags import parse_job_tag

from .helpers import ARTIFACTS, login_page

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.browser]

WORKBENCH = str(Path(sys.executable).parent / "workbench")
#: budgets are shared for a minute; GPU jobs of others may run meanwhile (GPU-hours)
BUDGET_TOLERANCE = 0.25


def login(browser, hub_url, user, password):
    return login_page(browser, hub_url, user, password, accept_downloads=True)


@pytest.fixture
def alice_session(hub_url, demo_password, slurm, wait_for):
    """alice's running session: hers if she has one (other tests share the demo users),
    else one started here (and stopped after the test); the Slurm job behind it."""
    r = requests.post(f"{hub_url}hub/api/users/alice/tokens",
                      json={"auth": {"username": "alice", "password": demo_password},
                            "note": "dashboards test", "expires_in": 600})
    assert r.status_code == 201, r.text
    api = requests.Session()
    api.headers["Authorization"] = f"token {r.json()['token']}"
    base = f"{hub_url}hub/api/users/alice"

    def running_job():
        return next((j for j in slurm.run(queries.jobs()) if j.user == "alice"
                     and j.state.is_running and j.nodes
                     and (parse_job_tag(j.comment) or {}).get("user") == "alice"), None)

    started = False
    if running_job() is None:
        for _ in range(3):  # another test may stop alice's server while this one starts it
            r = api.post(f"{base}/server", json={"user_options": {
                "partition": "cpu", "account": "startup-helios", "gpus": 0, "cpus": 1,
                "memory": "2G", "runtime": "00:30:00"}})
            if r.status_code in (201, 202, 400) and "already" not in r.text:
                started = r.status_code in (201, 202)
                break
        assert started, r.text
    wait_for(running_job, "alice's session running")
    yield running_job  # asked again when needed: other tests may restart her session
    if started:
        api.delete(f"{base}/server")


def test_sam_sees_alices_running_session_and_is_refused_the_managers_dashboard(
        browser, hub_url, demo_password, alice_session, wait_for):
    page = login(browser, hub_url, "sam", demo_password)
    page.goto(f"{hub_url}hub/home")
    expect(page.locator("#wb-link-manager-dashboard")).to_have_count(0)
    page.click("#wb-link-support-dashboard")
    sessions = page.locator(".wb-table-sessions")
    expect(sessions.locator("table")).to_be_visible(timeout=90_000)

    def row_of_alices_job():
        job = alice_session()  # her running session now, from squeue
        row = sessions.locator("tr", has_text=f"{job.job_id}") if job else None
        # the table refreshes every 10 s: a session started just now may still show PENDING
        if row is not None and row.count() and "alice" in row.first.inner_text() \
                and "RUNNING" in row.first.inner_text():
            return job, row.first
        return None
    job, row = wait_for(row_of_alices_job, "alice's session in the support dashboard", 90)
    text = row.inner_text()
    assert job.nodes in text and "startup-helios" in text and "RUNNING" in text
    expect(page.locator(".wb-table-nodes")).to_contain_text(job.nodes)
    # every column in the 1400 px window, the last ones too: nothing behind a sideways scroll
    box = sessions.locator("table").evaluate(
        "t => ({table: t.scrollWidth, shown: t.parentElement.clientWidth})")
    assert box["table"] <= box["shown"], box
    last = sessions.locator("th").last
    assert last.inner_text().strip() == "last activity"
    assert last.bounding_box()["x"] + last.bounding_box()["width"] <= 1400
    page.screenshot(path=str(ARTIFACTS / "dashboard-support.png"), full_page=True)
    # one user: alice's sessions and jobs, and the tail of this job's output
    page.locator(".wb-support input[placeholder='user name']").fill("alice")
    page.get_by_role("button", name="Show", exact=True).click()
    expect(page.locator(".wb-table-user-sessions")).to_contain_text(str(job.job_id))
    page.locator(".wb-job-pick select").select_option(str(job.job_id))
    page.get_by_role("button", name="Show output").click()
    expect(page.locator(".wb-output-path")).to_contain_text(
        f"/home/alice/.jupyterhub-slurm-{job.job_id}.log")
    assert page.locator(".wb-output").inner_text().strip()  # the file's last lines
    # a user who does not exist: a message, the rest keeps working
    page.locator(".wb-support input[placeholder='user name']").fill("nosuchuser")
    page.get_by_role("button", name="Show", exact=True).click()
    expect(page.locator(".wb-support")).to_contain_text("There is no user 'nosuchuser'")
    expect(sessions.locator("table")).to_be_visible()
    assert "Traceback" not in page.content()
    page.screenshot(path=str(ARTIFACTS / "dashboard-support-user.png"), full_page=True)

    refused = page.goto(f"{hub_url}services/manager-dashboard/")
    assert refused.status == 403


def _allocations_show() -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "allocations", "show",
                          "--json"], capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    rows = data["projects"] if isinstance(data, dict) else data
    return {r["project"]: r["used_gpu_hours"] for r in rows}


def test_maria_sees_the_used_gpu_hours_of_the_allocations_and_downloads_a_csv(
        browser, hub_url, demo_password, slurm, tmp_path):
    page = login(browser, hub_url, "maria", demo_password)
    page.goto(f"{hub_url}hub/home")
    expect(page.locator("#wb-link-support-dashboard")).to_have_count(0)
    page.click("#wb-link-manager-dashboard")
    budgets = page.locator(".wb-table-budgets")
    expect(budgets.locator("table")).to_be_visible(timeout=90_000)
    expected = _allocations_show()
    rows = budgets.locator("tbody tr")
    shown = {}
    for i in range(rows.count()):
        cells = rows.nth(i).locator("td").all_inner_texts()
        shown[cells[1]] = float(cells[3])  # project, used GPU-hours
    assert set(shown) == set(expected)
    for project, used in expected.items():
        assert abs(shown[project] - used) <= BUDGET_TOLERANCE, (project, shown[project], used)
    # drawn by the dashboards' own renderer (plotly.js basic), not jupyterlab-plotly
    expect(page.locator(".wb-manager .wb-chart.js-plotly-plot").first).to_be_visible()
    # Voila scrolls inside its own container: a tall window shows every chart and table
    page.set_viewport_size({"width": 1400, "height": 4200})
    page.wait_for_function("document.querySelectorAll('.wb-manager .js-plotly-plot .main-svg')"
                           ".length >= 4")
    page.screenshot(path=str(ARTIFACTS / "dashboard-programmes.png"))
    page.set_viewport_size({"width": 1400, "height": 900})

    with page.expect_download() as dl:
        budgets.locator("a.wb-csv").click()
    path = tmp_path / dl.value.suggested_filename
    dl.value.save_as(path)
    assert path.name == "budgets.csv"
    with open(path) as f:
        table = list(csv.DictReader(f))
    assert {r["project"] for r in table} == set(expected)

    # a reversed range (from tomorrow to the default end, today): a message; the tables stay
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    page.locator(".wb-manager input[type=date]").first.fill(tomorrow)
    page.locator(".wb-manager input[type=date]").first.press("Enter")
    expect(page.locator(".wb-manager")).to_contain_text(
        f"The start ({tomorrow}) is after the end (")
    expect(budgets.locator("table")).to_be_visible()

    assert page.goto(f"{hub_url}services/support-dashboard/").status == 403


def test_alice_sees_no_dashboard_link_and_is_refused_both(browser, hub_url, demo_password):
    page = login(browser, hub_url, "alice", demo_password)
    page.goto(f"{hub_url}hub/home")
    expect(page.locator("#wb-dashboards")).to_have_count(0)
    for service in ("support-dashboard", "manager-dashboard"):
        assert page.goto(f"{hub_url}services/{service}/").status == 403


def test_a_dashboard_whose_service_is_down_says_so_and_comes_back_by_itself(
        browser, hub_url, demo_password, factory_home):
    """The manager dashboard's service killed: maria gets a page that names the service and
    says it tries again (not JupyterHub's "your server appears to be down"); once the service
    is back (`workbench up`), that page shows the dashboard without her doing anything."""
    page = login(browser, hub_url, "maria", demo_password)
    pidfile = factory_home.pidfile("manager-dashboard")
    pid = daemons.read_pid(pidfile)
    assert pid, "the manager dashboard is not running"
    os.kill(pid, 9)
    daemons.wait_until(lambda: not daemons.read_pid(pidfile), "manager-dashboard gone", 10)
    try:
        response = page.goto(f"{hub_url}services/manager-dashboard/")
        assert response.status == 503
        down = page.locator("#wb-service-down")
        expect(down).to_be_visible()
        expect(down).to_contain_text("manager-dashboard service is not answering")
        expect(page.locator("#wb-service-retry")).to_contain_text("Trying again in")
        assert "Your server appears to be down" not in down.inner_text()
        assert "Traceback" not in page.content()
        page.screenshot(path=str(ARTIFACTS / "dashboard-service-down.png"))
    finally:
        subprocess.run([WORKBENCH, "up"], check=True, capture_output=True, timeout=300)
    # the page's own retry (every 10 s) finds the service back
    expect(page.locator(".wb-table-budgets table")).to_be_visible(timeout=120_000)
