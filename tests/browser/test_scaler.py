"""The scaler in JupyterLab, in a real session: ida shows the panel, presses Scale, sees her
worker job in the live table, uses ``scaler.client`` in the next cell, is refused a request
the partition could never hold, and presses Stop."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import ARTIFACTS, log_in, run_cell
from tests.scaling_session import open_session

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.browser]

SESSION = {"partition": "cpu", "account": "industry-autotwin", "gpus": 0, "cpus": 1,
           "memory": "3G", "runtime": "00:20:00"}


def test_ida_scales_workers_from_the_panel(page, hub_url, demo_password,  # noqa: F811
                                           slurm, wait_for):
    with open_session(hub_url, demo_password, slurm, "ida", SESSION) as session:
        log_in(page, hub_url, "ida", demo_password)
        page.wait_for_url(re.compile(r".*/(hub/home|hub/spawn|user/ida/).*"))
        page.goto(f"{hub_url}user/ida/lab?reset")
        page.locator(".jp-LauncherCard[data-category='Notebook']").first.click()
        run_cell(page, "import aifactory as af; scaler = af.ClusterScaler(pools=["
                       "af.WorkerPool('cpu', 'cpu', cpus=1, memory='1G', runtime='00:10:00')], "
                       "counts={'cpu': 1}, refresh_s=1); scaler")
        panel = page.locator(".workbench-cluster-scaler")
        try:
            expect(panel).to_be_visible(timeout=90_000)
        except AssertionError as e:
            shown = page.locator(".jp-OutputArea-output").all_inner_texts()
            raise AssertionError(f"no panel; the cell shows: {shown}") from e
        expect(panel).to_contain_text("industry-autotwin")
        expect(panel).to_contain_text("This request costs 0.00 GPU-hours")

        panel.locator("button", has_text="Scale").click()
        table = panel.locator("table.workbench-workers")
        expect(table).to_contain_text("RUNNING", timeout=120_000)
        expect(table.locator("td", has_text="yes")).to_have_count(1, timeout=60_000)
        expect(panel.locator("a[href*='/user/ida/proxy/']")).to_have_count(1)
        page.screenshot(path=str(ARTIFACTS / "scaler-workers.png"), full_page=True)
        jobs = session.worker_jobs()
        assert len(jobs) == 1 and jobs[0].user == "ida" and jobs[0].partition == "cpu"
        expect(table).to_contain_text(str(jobs[0].job_id))

        run_cell(page, "client = scaler.client; "
                       "print('WORKERS', len(client.scheduler_info()['workers']), "
                       "client.submit(sum, [1, 2, 3]).result())")
        out = page.locator(".jp-OutputArea-output").filter(has_text=re.compile(r"WORKERS \d")).first
        expect(out).to_contain_text("WORKERS 1 6", timeout=60_000)

        run_cell(page, "scaler.pool_rows[0].count.value = 99")
        panel.locator("button", has_text="Scale").click()
        expect(panel.locator(".workbench-scaler-cost")).to_contain_text("could ever hold")
        expect(panel.locator(".workbench-scaler-status")).to_contain_text(
            "Invalid count of worker group 'cpu'", timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "scaler-refused.png"), full_page=True)
        assert [j.job_id for j in session.worker_jobs()] == [jobs[0].job_id]  # nothing new

        panel.locator("button", has_text="Stop").click()
        expect(panel.locator(".workbench-scaler-status")).to_contain_text(
            "Stopped: every worker job cancelled", timeout=30_000)
        wait_for(lambda: not session.worker_jobs(), "the worker cancelled by Stop", 60)
