"""bob in a real browser: saves his usual choices as a preset, finds it chosen after a reload,
starts from it; sees why it cannot start once the allocations take the project from him; and
finds his ended sessions on the home page with how they ended, their output and CPU use."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import yaml
from playwright.sync_api import expect

from tests.integration.test_past_sessions import sacct_cpu_efficiency
from workbench.paths import data_file
from workbench.slurm import queries

from .helpers import ARTIFACTS, log_in

WORKBENCH = str(Path(sys.executable).parent / "workbench")
USUAL = {"partition": "cpu", "account": "research-climate", "cpus": "1", "memory": "1G",
         "runtime": "00:10:00"}


def presets_of(api) -> list[str]:
    return [p["name"] for p in api.get(f"{api.base}/workbench/presets/bob").json()["presets"]]


def clear_presets(api) -> None:
    for name in presets_of(api):
        api.delete(f"{api.base}/workbench/presets/bob/{quote(name, safe='')}")


def fill(page, choices: dict) -> None:
    page.select_option("#wb-partition", choices["partition"])
    page.select_option("#wb-account", choices["account"])
    page.fill("#wb-gpus", "0")
    for key in ("cpus", "memory", "runtime"):
        page.fill(f"#wb-{key}", choices[key])


def test_bob_saves_a_preset_starts_from_it_and_sees_why_it_no_longer_fits(
        page, hub_url, demo_password, hub_api, slurm, factory_home, wait_for):
    bob = hub_api("bob")  # stops bob's server after the test
    clear_presets(bob)
    site = factory_home.etc / "allocations.yaml"
    assert not site.exists(), "a site allocations file is in the way of this test"
    try:
        log_in(page, hub_url, "bob", demo_password)
        page.wait_for_url(re.compile(r".*/hub/spawn.*"))
        fill(page, USUAL)
        page.once("dialog", lambda d: d.accept("my usual"))
        page.click("#wb-preset-save")
        expect(page.locator("#wb-preset-answer")).to_have_text("Saved as preset my usual.")
        page.reload()  # the form lists it; applying it puts its choices back
        page.select_option("#wb-account", "research-medai")
        page.locator("#wb-preset-list li[data-name='my usual'] .wb-preset-apply").click()
        expect(page.locator("#wb-account")).to_have_value("research-climate")
        expect(page.locator("#wb-runtime")).to_have_value("00:10:00")
        page.screenshot(path=str(ARTIFACTS / "presets-chosen.png"))
        page.click("form input[type=submit], form button[type=submit]")
        page.wait_for_url(re.compile(r".*/user/bob/lab.*"), timeout=180_000)
        session = next(j for j in slurm.run(queries.jobs())
                       if j.user == "bob" and j.state.is_running and j.name.startswith("jupyter"))
        assert (session.account, session.partition) == ("research-climate", "cpu")
        assert bob.delete(f"{bob.base}/users/bob/server").status_code in (202, 204)
        wait_for(lambda: not bob.get(f"{bob.base}/users/bob").json()["servers"],
                 "bob's server stopped", 60)
        page.goto(f"{hub_url}hub/spawn")  # started from it: the form opens with it chosen
        expect(page.locator("#wb-preset-list li.wb-selected")).to_contain_text("my usual")
        expect(page.locator("#wb-runtime")).to_have_value("00:10:00")

        # the allocations take research-climate from bob: his preset says why
        data = yaml.safe_load(data_file("cluster", "allocations.yaml").read_text())
        climate = data["programmes"]["research"]["projects"]["research-climate"]
        climate["members"] = [m for m in climate["members"] if m != "bob"]
        site.write_text(yaml.safe_dump(data, sort_keys=False))
        out = subprocess.run([WORKBENCH, "allocations", "apply"], capture_output=True,
                             text=True, check=True).stdout
        assert "removed bob from research-climate" in out
        page.goto(f"{hub_url}hub/spawn")
        why = page.locator("#wb-preset-list li[data-name='my usual'] .wb-preset-why")
        expect(why).to_contain_text("research-climate")
        page.screenshot(path=str(ARTIFACTS / "presets-no-longer-fits.png"))
    finally:
        if site.exists():
            site.unlink()
            subprocess.run([WORKBENCH, "allocations", "apply"], capture_output=True, check=True)
        clear_presets(bob)
    assert "my usual" not in presets_of(bob)

    # the home page: the stopped session, with how it ended and its CPU use as sacct has it
    def row():
        page.goto(f"{hub_url}hub/home")
        tr = page.locator(f"tr.wb-past-session[data-job='{session.job_id}']")
        tr.wait_for(timeout=30_000)
        cpu = tr.locator(".wb-past-cpu").inner_text()
        return tr if cpu.endswith("%") else None
    tr = wait_for(row, "bob's ended session on the home page with its CPU use", 120)
    expect(tr.locator(".wb-past-ended")).to_contain_text("stopped by you")
    expect(tr.locator(".wb-past-output")).to_contain_text(f".jupyterhub-slurm-{session.job_id}")
    shown = int(tr.locator(".wb-past-cpu").inner_text().rstrip(" %"))
    assert abs(shown - round(100 * sacct_cpu_efficiency(slurm, session.job_id))) <= 1
    page.screenshot(path=str(ARTIFACTS / "past-sessions.png"))
