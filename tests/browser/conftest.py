"""Fixtures of the browser tests: ``page``, a fresh chromium page (1400x900, 60 s timeouts);
``browser``, chromium itself, for a page per person."""

import pytest
from playwright.sync_api import sync_playwright

from .helpers import ARTIFACTS, CHROMIUM_ARGS


@pytest.fixture
def page():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


@pytest.fixture
def browser():
    """Debian's chromium, for tests that log several people in (a page each:
    :func:`.helpers.login_page`)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()
