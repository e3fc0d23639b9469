"""The access service's page in chromium, the service in-process (no hub: the login is a
cookie naming the user, as ``tests/unit/test_access_service.py`` replaces it): what a
reviewer is told when she declares a conflict of interest, with and without another
reviewer free to take her place; the manager's ranking shows the call chosen last, also when
the answer for the call shown before comes later."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

import extensions.hubservice
from tests.unit.test_access_service import access  # noqa: F401 (a fixture)
from tests.unit.test_hostile_input import GROUPS, as_user  # noqa: F401 (a fixture)
from tests.unit.test_merit import call_body, carla, maria, proposal_body

pytestmark = pytest.mark.browser


@pytest.fixture
def page_as(access, monkeypatch, browser):  # noqa: F811 (the fixture imported above)
    """``page_as(user)``: the access page in a browser context of its own, logged in as
    ``user``."""
    def who(handler):
        name = handler.get_cookie("who")
        return {"name": name, "groups": GROUPS.get(name, [])} if name else None

    for cls in (extensions.hubservice.APIHandler, extensions.hubservice.PageHandler):
        monkeypatch.setattr(cls, "get_current_user", who)
    monkeypatch.setattr(extensions.hubservice.APIHandler, "check_xsrf_cookie", lambda h: None)

    def open_as(user):
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.add_cookies([{"name": "who", "value": user, "url": access.url}])
        page = context.new_page()
        page.goto(access.url + "/")
        return page
    return open_as


def test_a_conflict_says_whether_another_reviewer_took_the_proposal(access, page_as):  # noqa: F811
    office = access.office
    call = office.open_call(maria, call_body())
    p = office.submit(carla, office.new_proposal(carla, call.id, proposal_body()).id)
    [first] = [a.reviewer for a in office.store.assignments()]

    page = page_as(first)
    page.click(f"#conflict-{p.id}")
    expect(page.locator("#answer")).to_have_text(
        f"Conflict declared: proposal {p.id} goes to another reviewer.")
    second = next(a.reviewer for a in office.store.assignments() if not a.conflict)
    assert second != first

    page = page_as(second)
    page.click(f"#conflict-{p.id}")
    expect(page.locator("#answer")).to_have_text(
        f"Conflict declared: proposal {p.id} waits for another reviewer (none is free now).")
    expect(page.locator(f"#to-review tr[data-proposal='{p.id}']")).to_have_count(0)


def test_the_ranking_shows_the_call_chosen_last_whichever_answer_comes_last(access, page_as):  # noqa: F811
    office = access.office
    first = office.open_call(maria, call_body(name="Start-ups A", gpu_hours=1000))
    office.submit(carla, office.new_proposal(carla, first.id, proposal_body()).id)
    second = office.open_call(maria, call_body(name="Start-ups B", gpu_hours=500))
    held = []  # the first call's ranking, answered late
    page = page_as("maria").context.new_page()
    page.route(f"**/api/calls/{first.id}/proposals", lambda route: held.append(route))
    with page.expect_request(f"**/api/calls/{first.id}/proposals"):
        page.goto(access.url + "/")
    expect(page.locator("#ranking-call option")).to_have_count(2)
    page.select_option("#ranking-call", str(second.id))
    expect(page.locator("#ranking-share")).to_contain_text("Offered 500")
    with page.expect_response(f"**/api/calls/{first.id}/proposals"):
        held[0].continue_()
    page.wait_for_timeout(500)  # the late answer's handler has run by then
    expect(page.locator("#ranking-share")).to_contain_text("Offered 500")
    expect(page.locator("#ranking tr")).to_have_count(0)
