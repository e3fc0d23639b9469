"""The dataset picker in JupyterLab, in a real session on the cluster: alice picks the grid
load and reads it in the next cell; the health set is refused with the reason."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import ARTIFACTS, log_in, run_cell
from workbench.audit import AuditLog

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.browser]


def test_alice_uses_the_picker_in_jupyterlab(page, hub_url, demo_password,  # noqa: F811
                                             hub_api, wait_for, factory_home):
    api = hub_api("alice")
    # other tests drive alice too: start when her server is free
    wait_for(lambda: not api.get(f"{api.base}/users/alice").json()["servers"],
             "alice has no server")
    r = api.post(f"{api.base}/users/alice/server", json={"user_options": {
        "partition": "cpu", "account": "startup-helios", "gpus": 0, "cpus": 1,
        "memory": "3G", "runtime": "00:20:00"}})
    assert r.status_code in (201, 202), r.text
    wait_for(lambda: (api.get(f"{api.base}/users/alice").json()["servers"].get("") or {}).get(
        "ready"), "alice's server ready")

    log_in(page, hub_url, "alice", demo_password)
    page.wait_for_url(re.compile(r".*/(hub/home|hub/spawn|user/alice/).*"))
    page.goto(f"{hub_url}user/alice/lab?reset")
    page.locator(".jp-LauncherCard[data-category='Notebook']").first.click()
    run_cell(page, "import aifactory as af; picker = af.DatasetPicker(); picker")
    picker = page.locator(".wb-dataset-picker")
    try:
        expect(picker).to_be_visible(timeout=90_000)
    except AssertionError:
        page.screenshot(path=str(ARTIFACTS / "picker-not-shown.png"))
        raise
    options = picker.locator(".wb-picker-list select option")
    expect(options).to_have_count(5)

    picker.locator(".wb-picker-list select").select_option(
        label="Pseudonymised hospital admissions (no access)")
    status = picker.locator(".wb-picker-status")
    expect(status).to_contain_text("You may not use Pseudonymised hospital admissions")
    expect(status).to_contain_text("programme research")
    expect(picker.locator(".wb-dataset-details")).to_contain_text("Who may use it")
    page.screenshot(path=str(ARTIFACTS / "picker-refused.png"))

    picker.locator(".wb-picker-list select").select_option(
        label="Hourly electricity grid load per region")
    expect(status).to_contain_text("Opened grid-load for project startup-helios")
    expect(picker.locator(".wb-dataset-details")).to_contain_text(
        "Creative Commons Attribution 4.0")
    page.screenshot(path=str(ARTIFACTS / "picker-grid-load.png"))
    run_cell(page, "df = picker.value.to_pandas(); import os; print('ROWS', len(df), "
             "list(df.columns)[:3], 'JOB', os.environ['SLURM_JOB_ID'])")
    out = page.locator(".jp-OutputArea-output").filter(has_text="ROWS").first
    expect(out).to_contain_text("ROWS 210528 ['timestamp', 'region', 'load_mw'] JOB",
                                timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "picker-jupyterlab.png"))
    # the open is in the audit trail with the session's job and node
    job_id = int(out.inner_text().split("JOB")[1].split()[0])
    opened = [r for r in AuditLog(factory_home.audit_db).records(
        "dataset.opened", actor="alice", limit=20) if r.details.get("job_id") == job_id]
    assert [r.subject for r in opened] == ["grid-load"]
    assert opened[0].details["node"] and opened[0].details["project"] == "startup-helios"
