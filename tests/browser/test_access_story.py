"""Merit-based access, the whole story in a real browser, through the running hub and its
access service, logged in as the demo's people.

maria (manager) opens a call of the start-ups programme for h100 hours; carla (a start-up
founder without a project) finds it on the hub's home page, applies, saves a draft, is
refused a request over the call's maximum with the field named, and submits; alice applies
too; rita (reviewer) declares a conflict of interest on alice's proposal and scores carla's;
maria sees the ranking and awards 50 GPU-hours; within 10 s carla's spawn form lists the
new project with its hours, and she starts a session on it; Slurm has the account with its
GPU-minute limit; a call over what the programme's share has left is refused with what is
left. Screenshots of each page in the test artefacts.

Everything the story made (its call, proposals, reviews, the award, the Slurm account) is
removed afterwards, also when it fails (:mod:`tests.merit_story`): the access service has
no withdraw.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from tests.hubsessions import token
from tests.merit_story import calls_named, remove_calls
from workbench.slurm import queries
from workbench.slurm.parse import parse_tres

from .helpers import ARTIFACTS, login_page

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.browser]

PROJECT, OTHER = "carla-story", "alice-story"
#: the call: GPU-hours on offer and the most per proposal
OFFER, MOST = 200, 100
REQUEST, AWARD = 60, 50
#: the issue's goal: from the award to the project in the applicant's spawn form, in s
AWARD_TO_FORM_S = 10


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"access-{name}.png"), full_page=True)


@pytest.fixture
def story(slurm, factory_home):
    """The story's call name (unique to the run); afterwards its rows, its award and the
    project's Slurm account are removed."""
    name = f"Story start-ups {secrets.token_hex(3)}"
    yield name
    db = factory_home.merit_db
    remove_calls(slurm, db, calls_named(db, name))


def answer(page, text: str, ok: bool = True) -> str:
    """The access page's status line once it says ``text``: its text."""
    line = page.locator("#answer")
    expect(line).to_contain_text(text)
    expect(line).to_have_class("ok" if ok else "error")
    return line.inner_text()


def test_a_call_a_proposal_a_review_an_award_and_a_session_on_the_new_project(
        story, hub_api, browser, hub_url, demo_password, slurm, factory_home, wait_for):
    carla_api = hub_api("carla")  # her server is stopped after the test, before the cleanup
    maria_api, alice_api = (token(hub_url, user, demo_password, "access story")
                            for user in ("maria", "alice"))
    now = dt.datetime.now(dt.UTC)

    # maria opens the call
    maria = login_page(browser, hub_url, "maria", demo_password)
    maria.goto(f"{hub_url}services/access/")
    maria.fill("#c-name", story)
    maria.select_option("#c-programme", "startups")
    maria.fill("#c-gpu-type", "h100")
    maria.fill("#c-gpu-hours", str(OFFER))
    maria.fill("#c-max", str(MOST))
    maria.fill("#c-opens", (now - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    maria.fill("#c-closes", (now + dt.timedelta(days=7)).strftime("%Y-%m-%dT%H:%M"))
    maria.click("#open-call")
    answer(maria, f"Call {story} opened (open).")
    [call] = [c for c in maria_api.get(f"{maria_api.access}/calls").json()["calls"]
              if c["name"] == story]
    cid = call["id"]
    expect(maria.locator(f"#calls tr[data-call='{cid}']")).to_contain_text("startups")
    shot(maria, "1-maria-opens-a-call")

    # carla sees it on the hub's home page and applies
    carla = login_page(browser, hub_url, "carla", demo_password)
    carla.goto(f"{hub_url}hub/home")
    listed = carla.locator(f"#wb-call-{cid}")
    expect(listed).to_contain_text(story)
    expect(listed).to_contain_text(f"{OFFER} h100 GPU-hours on offer, at most {MOST} per "
                                   "proposal")
    shot(carla, "2-carla-home-page")
    carla.click("#wb-apply")
    carla.click(f"#apply-{cid}")
    carla.fill("#p-project", PROJECT)
    carla.fill("#p-organisation", "Carla Story GmbH")
    carla.select_option("#p-org-type", "startup")
    carla.fill("#p-abstract", "Small vision models for sorting recyclables.")
    carla.fill("#p-gpu-hours", str(REQUEST))
    carla.click("#save-draft")
    pid = int(re.search(r"Draft (\d+) saved", answer(carla, "saved")).group(1))
    expect(carla.locator(f"#mine tr[data-proposal='{pid}']")).to_contain_text("draft")
    # over the call's maximum: refused, the field named, the draft as it was
    carla.fill("#p-gpu-hours", str(MOST + 50))
    carla.click("#submit-proposal")
    answer(carla, f"gpu_hours {MOST + 50} is over the call's maximum of {MOST} per proposal "
           "(gpu_hours)", ok=False)
    shot(carla, "3-carla-over-the-maximum")
    carla.fill("#p-gpu-hours", str(REQUEST))
    carla.click("#submit-proposal")
    answer(carla, f"Proposal {pid} submitted: in-review.")
    expect(carla.locator(f"#mine tr[data-proposal='{pid}']")).to_contain_text("in-review")
    shot(carla, "4-carla-submitted")

    # a second applicant, through the API
    r = alice_api.post(f"{alice_api.access}/calls/{cid}/proposals", json={
        "project": OTHER, "organisation": "Helios", "org_type": "startup",
        "abstract": "Forecasting solar output.", "gpu_hours": 40})
    assert r.status_code == 201, r.text
    other = r.json()["id"]
    r = alice_api.post(f"{alice_api.access}/proposals/{other}/submit")
    assert r.status_code == 200 and r.json()["state"] == "in-review", r.text

    # rita: a conflict of interest on alice's proposal, a review of carla's
    rita = login_page(browser, hub_url, "rita", demo_password)
    rita.goto(f"{hub_url}services/access/")
    rita.fill(f"#conflict-reason-{other}", "I advise Helios")
    rita.click(f"#conflict-{other}")
    answer(rita, f"Conflict declared: proposal {other}")
    expect(rita.locator(f"#to-review tr[data-proposal='{other}']")).to_have_count(0)
    for criterion, score in (("excellence", 5), ("impact", 4), ("feasibility", 4)):
        rita.fill(f"#score-{pid}-{criterion}", str(score))
    rita.fill(f"#comment-{pid}", "clear plan, modest request")
    rita.click(f"#review-{pid}")
    answer(rita, f"Review of proposal {pid} saved.")
    expect(rita.locator(f"#to-review tr[data-proposal='{pid}']")).to_contain_text("reviewed")
    shot(rita, "5-rita-reviews")

    # maria: the ranking, and the award
    maria.reload()
    expect(maria.locator("#ranking-share")).to_contain_text("Offered")  # the first call's
    maria.select_option("#ranking-call", str(cid))
    ranking = maria.locator("#ranking tr")
    expect(ranking).to_have_count(2)
    expect(ranking.first).to_have_attribute("data-proposal", str(pid))  # scored first
    expect(ranking.first).to_contain_text("4.5")  # (2 x 5 + 4 + 4) / 4
    expect(ranking.nth(1)).to_contain_text("in-review")
    shot(maria, "6-maria-ranking")
    maria.fill(f"#award-hours-{pid}", str(AWARD))
    awarded = time.monotonic()
    maria.click(f"#award-{pid}")
    decided = answer(maria, f"Awarded {AWARD} GPU-hours to {PROJECT}; Slurm: ")
    assert f"added account {PROJECT} under startups" in decided
    decision_s = time.monotonic() - awarded
    shot(maria, "7-maria-awards")

    # carla's spawn form lists the project with its hours
    budget = carla.locator(f"#wb-budgets tr[data-account='{PROJECT}']")

    def listed_in_form():
        carla.goto(f"{hub_url}hub/spawn")
        return budget.count() > 0

    wait_for(listed_in_form, f"{PROJECT} in carla's spawn form", 60)
    to_form_s = time.monotonic() - awarded
    print(f"award request {decision_s:.1f} s; award to carla's form {to_form_s:.1f} s")
    assert to_form_s < AWARD_TO_FORM_S, f"{PROJECT} reached carla's form in {to_form_s:.1f} s"
    assert budget.locator("td").all_inner_texts() == [PROJECT, str(AWARD), "0.00",
                                                      f"{AWARD:.2f}"]
    expect(carla.locator("#wb-account option")).to_have_text([PROJECT])
    shot(carla, "8-carla-spawn-form")

    # Slurm: the account under the programme, its GPU-minute limit, carla's association
    rows = slurm.run(queries.sacctmgr_list("association", "Account", "ParentName", "User",
                                           "GrpTRESMins", where=(f"account={PROJECT}",)))
    assoc = {(r[2] or "-"): r for r in rows}
    assert assoc["-"][1] == "startups"
    assert parse_tres(assoc["-"][3]) == {"gres/gpu": AWARD * 60}
    assert set(assoc) == {"-", "carla"}

    # a session on the new project (on the cpu partition: no GPU-hours spent)
    carla.select_option("#wb-partition", "cpu")
    carla.select_option("#wb-account", PROJECT)
    carla.fill("#wb-gpus", "0")
    carla.fill("#wb-cpus", "1")
    carla.fill("#wb-memory", "2G")
    carla.fill("#wb-runtime", "00:15:00")
    carla.click("form input[type=submit], form button[type=submit]")
    job = wait_for(lambda: next((j for j in slurm.run(queries.jobs()) if j.user == "carla"
                                 and j.state.is_running), None), "carla's session running")
    assert (job.account, job.partition) == (PROJECT, "cpu")
    carla.wait_for_url(re.compile(r".*/user/carla/.*"), timeout=120_000)
    shot(carla, "9-carla-session")
    carla_api.delete(f"{carla_api.base}/users/carla/server")
    wait_for(lambda: not carla_api.get(f"{carla_api.base}/users/carla").json()["servers"],
             "carla's session stopped", 60)

    # the managers' dashboard: the call with what it awarded, the project marked an award
    calls = maria.locator(".wb-table-access-calls tbody tr", has_text=story)

    def dashboard_has_the_award():
        maria.goto(f"{hub_url}services/manager-dashboard/")
        try:
            calls.first.wait_for(timeout=60_000)
        except PlaywrightTimeout:
            return False  # not drawn within a minute: load the page again
        return float(row()["GPU-hours awarded"]) == AWARD

    def row() -> dict[str, str]:
        heads = maria.locator(".wb-table-access-calls thead th").all_inner_texts()
        return dict(zip(heads, calls.first.locator("td").all_inner_texts(), strict=True))
    wait_for(dashboard_has_the_award, "the award in the managers' Access part", 150,
             interval=5)
    shown = row()
    assert (shown["call"], shown["programme"], shown["state"]) == (story, "startups", "open")
    assert float(shown["GPU-hours offered"]) == OFFER, shown
    budget_row = maria.locator(".wb-table-budgets tbody tr", has_text=PROJECT)
    expect(budget_row).to_contain_text("award")
    shot(maria, "11-maria-dashboard-budgets")
    calls.first.scroll_into_view_if_needed()  # Voila scrolls inside its own container
    shot(maria, "12-maria-dashboard-access")

    # more than the programme's share has left: refused, with what is left
    left = next(p["left_gpu_hours"] for p in
                maria_api.get(f"{maria_api.access}/summary").json()["programmes"]
                if p["programme"] == "startups")
    maria.goto(f"{hub_url}services/access/")
    maria.fill("#c-name", f"{story} (too big)")
    maria.fill("#c-gpu-hours", str(int(left) + 100))
    maria.fill("#c-max", str(MOST))
    maria.fill("#c-opens", (now - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    maria.fill("#c-closes", (now + dt.timedelta(days=7)).strftime("%Y-%m-%dT%H:%M"))
    maria.click("#open-call")
    answer(maria, f"is more than the share of programme startups has left: {left:g} "
           "GPU-hours", ok=False)
    expect(maria.locator("#answer")).to_contain_text("(gpu_hours)")
    shot(maria, "10-maria-over-the-share")
    assert calls_named(factory_home.merit_db, f"{story} (too big)") == []
