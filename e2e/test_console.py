"""The web console in real headless Chromium (Debian's), driven by Playwright,
against `greenthread serve` with the real demo model. Screenshots of each
page go to e2e/out/console/."""
import os
import re
import shutil
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import DEMO_MODEL, OUT, create_key

SHOTS = OUT / "console"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    path = os.environ.get("GREENTHREAD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("Chromium is missing: scripts/test.sh installs Debian's chromium package")
    return path


@pytest.fixture(scope="module")
def page(server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        yield page
        browser.close()


def sign_in(page, key: str) -> None:
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def test_sign_in_refuses_bad_keys_then_shows_the_models_with_their_state(server, page):
    page.goto(server.base + "/")
    expect(page).to_have_url(server.base + "/ui/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.screenshot(path=str(SHOTS / "sign-in.png"))

    sign_in(page, "gt_not.a.key")
    expect(page.get_by_role("alert")).to_contain_text("API key")

    inference_only = create_key(server.base, server.admin, "default", ["inference"], name="console-inference")
    sign_in(page, inference_only["secret"])
    expect(page.get_by_role("alert")).to_contain_text("read")

    reader = create_key(server.base, server.admin, "default", ["read"], name="console-reader")
    sign_in(page, reader["secret"])
    expect(page.get_by_role("heading", name="Models")).to_be_visible()
    row = page.locator(f'tr[data-model="{DEMO_MODEL}"]')
    expect(row).to_be_visible()
    expect(row.locator(".state")).to_have_text(re.compile("staged|sleeping|serving"))
    page.screenshot(path=str(SHOTS / "models.png"))

    # The key lives in the tab's session storage, not in the URL.
    assert reader["secret"] not in page.url
    page.reload()
    expect(page.get_by_role("heading", name="Models")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_a_key_is_created_with_its_secret_shown_once_then_revoked(server, page):
    manager = create_key(server.base, server.admin, "default", ["read", "manage"], name="console-manager")
    page.goto(server.base + "/ui/")
    sign_in(page, manager["secret"])
    page.get_by_role("button", name="API keys").click()
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    page.get_by_label("Name").fill("from-the-console")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("code[data-secret]")
    expect(secret).to_have_text(re.compile(r"^gt_"))
    new_secret = secret.inner_text()
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    row = page.locator('tr[data-key="from-the-console"]')
    expect(row).to_contain_text("inference")
    page.screenshot(path=str(SHOTS / "keys.png"))

    # The new key works against the API until it is revoked in the console.
    models = lambda: urllib.request.urlopen(urllib.request.Request(
        server.base + "/v1/models", headers={"authorization": f"Bearer {new_secret}"}), timeout=10)
    assert models().status == 200
    row.get_by_role("button", name="Revoke").click()
    expect(row.locator(".state")).to_have_text("revoked")
    with pytest.raises(urllib.error.HTTPError) as refused:
        models()
    assert refused.value.code == 401
    page.get_by_role("button", name="Sign out").click()


def test_the_playground_streams_an_answer_and_the_model_is_then_serving(server, page):
    user = create_key(server.base, server.admin, "default", ["read", "inference"], name="console-playground")
    page.goto(server.base + "/ui/")
    sign_in(page, user["secret"])
    page.get_by_role("button", name="Playground").click()
    page.get_by_label("Model").select_option(DEMO_MODEL)
    page.get_by_label("Temperature").fill("0")
    page.get_by_label("Message").fill("What is the capital of France? Answer in one word.")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("[data-answer]")).to_contain_text("Paris", timeout=60_000)
    expect(page.locator("[data-status]")).to_contain_text("First token after")
    expect(page.get_by_role("button", name="Send")).to_be_enabled(timeout=60_000)
    page.screenshot(path=str(SHOTS / "playground.png"))
    page.get_by_role("button", name="Models").click()
    expect(page.locator(f'tr[data-model="{DEMO_MODEL}"] .state')).to_have_text("serving")
    page.get_by_role("button", name="Sign out").click()


def test_the_usage_page_charts_the_playgrounds_tokens(server, page):
    reader = create_key(server.base, server.admin, "default", ["read"], name="console-usage")
    page.goto(server.base + "/ui/")
    sign_in(page, reader["secret"])
    page.get_by_role("button", name="Usage").click()
    chart = page.get_by_role("img", name="Tokens per minute, by model")
    expect(chart).to_be_visible()
    # The requests of the SDK tests and the playground are data points of the demo model.
    expect(chart.locator(f'rect[data-model="{DEMO_MODEL}"]').first).to_be_attached()
    row = page.locator(f'tr[data-usage="{DEMO_MODEL}"]')
    expect(row).to_be_visible()
    assert int(row.locator("td").nth(1).inner_text()) >= 1
    page.screenshot(path=str(SHOTS / "usage.png"))
    page.get_by_role("button", name="Sign out").click()


def test_the_console_is_readable_at_phone_width(server, page):
    reader = create_key(server.base, server.admin, "default", ["read"], name="console-phone")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(server.base + "/ui/")
    sign_in(page, reader["secret"])
    row = page.locator(f'tr[data-model="{DEMO_MODEL}"]')
    expect(row).to_be_visible()
    # Nothing wider than the screen: no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(SHOTS / "models-phone.png"))
    page.get_by_role("button", name="Sign out").click()
    page.set_viewport_size({"width": 1280, "height": 800})
