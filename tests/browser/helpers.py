"""What the browser tests share: how chromium is launched, where screenshots go, how a user
logs in through the hub's form, and how a cell is typed and run in JupyterLab."""

import os
import re
from pathlib import Path

from playwright.sync_api import expect

#: Debian's chromium, headless, with nothing that reaches out to the internet
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic", "--disable-dev-shm-usage"]
ARTIFACTS = Path(os.environ.get("WORKBENCH_TEST_ARTIFACTS", "/tmp/workbench-test-artifacts"))


def log_in(page, hub_url: str, user: str, password: str) -> None:
    """Log ``user`` in through the hub's login form on ``page`` (the caller waits for where
    the hub sends them)."""
    page.goto(f"{hub_url}hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.click("#login_submit")


def run_cell(lab, code: str) -> None:
    """Type ``code`` into the notebook's last cell and run it (Shift+Enter), once the
    notebook's kernel is connected and idle (a cell run before that may be dropped)."""
    expect(lab.locator(".jp-StatusBar-Widget", has_text=re.compile(r"\|\s*Idle")).first
           ).to_be_visible(timeout=120_000)
    editor = lab.locator(".jp-Notebook .jp-Cell .cm-content").last
    editor.click()
    lab.keyboard.type(code)
    lab.keyboard.press("Shift+Enter")


def login_page(browser, hub_url: str, user: str, password: str, **options):
    """A page of its own (a new browser context: its own cookies) with ``user`` logged in
    through the hub's form, once the hub's answer has loaded."""
    page = browser.new_page(viewport={"width": 1400, "height": 900}, **options)
    page.set_default_timeout(60_000)
    log_in(page, hub_url, user, password)
    page.wait_for_load_state()
    return page
