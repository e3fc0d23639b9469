"""A data scientist in a real browser: log in, fill the spawn form, land in JupyterLab on a
GPU node, run a cell. Debian's chromium driven by Playwright."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import ARTIFACTS, log_in, run_cell
from workbench.slurm import queries

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.browser]

def test_bob_starts_jupyterlab_on_a_gpu_node_from_the_form(page, hub_url, demo_password,
                                                            slurm, hub_api, wait_for):
    hub_api("bob")  # stops bob's server after the test
    log_in(page, hub_url, "bob", demo_password)

    # the form, built from the live cluster
    page.wait_for_url(re.compile(r".*/hub/spawn.*"))
    account = page.locator("#wb-account option")
    expect(account).to_have_count(2)
    assert sorted(account.all_inner_texts()) == ["research-climate", "research-medai"]
    page.select_option("#wb-partition", "gpu-a100")
    expect(page.locator("#wb-gpu-type option")).to_have_text(["a100"])
    page.select_option("#wb-account", "research-climate")
    page.fill("#wb-gpus", "1")
    page.fill("#wb-cpus", "2")
    page.fill("#wb-memory", "4G")
    page.fill("#wb-runtime", "00:30:00")
    # the money: each project's GPU-hours, and what this request costs
    budgets = page.locator("#wb-budgets")
    expect(budgets).to_contain_text("research-climate")
    expect(budgets).to_contain_text("research-medai")
    expect(page.locator("#wb-cost")).to_contain_text(
        "This request costs 0.50 GPU-hours (1 GPU for 00:30:00); research-climate has")
    page.screenshot(path=str(ARTIFACTS / "spawn-form.png"))
    page.click("form input[type=submit], form button[type=submit]")

    # JupyterLab, served by the Slurm job
    page.wait_for_url(re.compile(r".*/user/bob/lab.*"), timeout=120_000)
    # a fresh workspace, whatever an earlier session of bob's left open
    page.goto(f"{hub_url}user/bob/lab?reset")
    page.locator(".jp-LauncherCard[data-category='Notebook']").first.click()
    run_cell(page, "import os; print('JOB', os.environ['SLURM_JOB_ID'], "
                   "'GPUS', os.environ.get('CUDA_VISIBLE_DEVICES'))")
    output = page.locator(".jp-OutputArea-output").filter(has_text="JOB").first
    expect(output).to_contain_text("GPUS", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "jupyterlab-cell.png"))
    text = output.inner_text()
    m = re.search(r"JOB (\d+) GPUS (\S+)", text)
    assert m, text
    job_id, gpus = int(m.group(1)), m.group(2)
    job = next(j for j in slurm.run(queries.jobs()) if j.job_id == job_id)
    assert len(job.gpu_indices) == 1 and gpus == str(job.gpu_indices[0])  # the GPU Slurm gave
    assert job.user == "bob" and job.state.is_running
    assert (job.partition, job.account, job.batch_host) == ("gpu-a100", "research-climate",
                                                            "a100-1")
    assert (job.gpu_type, job.gpus) == ("a100", 1)


def test_alice_sees_her_walltime_in_jupyterlab_and_on_the_home_page_and_extends_it(
        page, hub_url, demo_password, slurm, hub_api, wait_for):
    api = hub_api("alice")
    r = api.post(f"{api.base}/users/alice/server", json={"user_options": {
        "partition": "gpu", "account": "startup-helios", "gpus": 1, "runtime": "00:10:00"}})
    assert r.status_code in (201, 202), r.text
    wait_for(lambda: (api.get(f"{api.base}/users/alice").json()["servers"].get("") or {}).get(
        "ready"), "alice's server ready")
    [job] = [j for j in slurm.run(queries.jobs()) if j.user == "alice" and j.state.is_running]
    limit = lambda: next(j for j in slurm.run(queries.jobs())  # noqa: E731
                         if j.job_id == job.job_id).time_limit_min

    log_in(page, hub_url, "alice", demo_password)

    # JupyterLab: the status bar shows the time left, a warning offers more (10 min < 15 min)
    page.goto(f"{hub_url}user/alice/lab?reset")
    item = page.locator("#wb-walltime")
    expect(item).to_have_text(re.compile(r"^Walltime: \d+ min left$"))
    expect(item).to_have_class(re.compile(r"\bwb-walltime-warn\b"))
    warning = page.locator(".Toastify__toast", has_text="Your session ends soon")
    expect(warning).to_contain_text(f"job {job.job_id}")
    page.screenshot(path=str(ARTIFACTS / "lab-walltime-warning.png"))
    warning.get_by_role("button", name="+1 h").click()
    expect(page.locator(".Toastify__toast", has_text="Extended by 60 minutes")).to_be_visible()
    expect(warning).to_have_count(0)  # the offer is withdrawn once granted
    expect(item).to_have_text(re.compile(r"^Walltime: 1 h 0\d min left$"))
    expect(item).not_to_have_class(re.compile(r"\bwb-walltime-warn\b"))
    assert limit() == 70
    # a click opens the popup: time left, what the session used so far, more time
    item.click()
    popup = page.locator(".wb-walltime-popup")
    expect(popup).to_contain_text(f"job {job.job_id} ends at")
    usage = popup.locator(".wb-walltime-usage")
    expect(usage).to_contain_text(re.compile(r"CPU use so far: \d+ % of \d+ CPUs?"))
    expect(usage).to_contain_text(re.compile(r"Peak memory so far: [\d.]+ GB of [\d.]+ GB"))
    # the local cluster's GPUs are fake: no nvidia-smi, no number made up
    expect(usage).to_contain_text("GPUs: 1 held, use not measured")
    expect(popup.get_by_role("button", name="+30 min")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "lab-walltime-popup.png"))
    page.keyboard.press("Escape")
    # a refusal comes back with the hub's reason (partition gpu: at most 12 h per job)
    refused = page.evaluate("""async () => {
        const xsrf = document.cookie.match(/_xsrf=([^;]+)/)[1];
        const r = await fetch("workbench/walltime".replace(/^/, location.pathname
                                  .replace(/lab.*$/, "")), {method: "POST",
            headers: {"X-XSRFToken": xsrf, "Content-Type": "application/json"},
            body: JSON.stringify({minutes: 1000})});
        return {status: r.status, body: await r.json()};
    }""")
    assert refused["status"] == 400, refused
    assert "at most 12:00:00 per job" in refused["body"]["message"], refused
    assert "650 more minutes" in refused["body"]["message"], refused
    page.screenshot(path=str(ARTIFACTS / "lab-walltime.png"))
    assert limit() == 70

    # the hub's home page shows the same session and extends it too
    page.goto(f"{hub_url}hub/home")
    left = page.locator("#wb-walltime-left")
    expect(left).to_contain_text(f"left (job {job.job_id}")
    expect(left).not_to_contain_text("ends soon")
    page.select_option("#wb-extend-minutes", "30")
    page.click("#wb-extend")
    expect(page.locator("#wb-extend-answer")).to_have_text("Extended by 30 minutes.")
    page.screenshot(path=str(ARTIFACTS / "home-walltime.png"))
    assert limit() == 100
