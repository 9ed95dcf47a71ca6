"""What the console's browser tests share: the real headless Chromium
(Debian's) driven by Playwright, a fresh tab per test, signing in and
moving between pages. Screenshots go to e2e/out/console/."""
import os
import shutil

import pytest
from playwright.sync_api import sync_playwright

from conftest import OUT

SHOTS = OUT / "console"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    path = os.environ.get("GREENTHREAD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("Chromium is missing: scripts/test.sh installs Debian's chromium package")
    return path


@pytest.fixture(scope="module")
def browser(server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh tab for each test: no session left over from another."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()


def sign_in(page, key: str) -> None:
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def go(page, tab: str) -> None:
    """Opens a page of the console by its tab."""
    page.get_by_role("navigation").get_by_role("link", name=tab, exact=True).click()


