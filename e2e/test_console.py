"""The web console in real headless Chromium (Debian's), driven by Playwright,
against `greenthread serve` with the real demo model. Screenshots of each
page go to e2e/out/console/."""
import re
import time
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect

from conftest import DEMO_MODEL, EMBED_MODEL, create_key, graphql
from console import SHOTS, browser, go, page, sign_in  # noqa: F401 (fixtures)


def sleep_model(server, name: str) -> None:
    """Puts `name` to sleep through GraphQL, as another operator would."""
    data = graphql(server.base, server.admin,
                   "mutation($i: ModelActionInput!) { sleepModel(input: $i) { userErrors { message } } }",
                   {"i": {"name": name}})
    assert data["sleepModel"]["userErrors"] == [], data


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
    expect(row.locator(".kind")).to_have_text("chat")
    expect(page.locator(f'tr[data-model="{EMBED_MODEL}"] .kind')).to_have_text("embedding")
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
    go(page, "API keys")
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("from-the-console")
    expect(page.get_by_label("Project")).to_have_value("default")
    page.get_by_label("Requests per minute").fill("0")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("alert")).to_contain_text("Requests per minute is a whole number from 1")
    page.get_by_label("Requests per minute").fill("120")
    page.get_by_label("At once").fill("3")
    page.get_by_label("Expires (optional)").fill("2099-12-31")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("code[data-secret]")
    expect(secret).to_have_text(re.compile(r"^gt_"))
    new_secret = secret.inner_text()
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    row = page.locator('tr[data-key="from-the-console"]')
    expect(row).to_contain_text("inference")
    expect(row.locator(".limits")).to_have_text("120 requests/min · 3 at once")
    expect(row.locator(".expires")).to_have_text("2099-12-31")
    stored = graphql(server.base, server.admin, "{ apiKeys(first: 100) { nodes { name requestsPerMinute "
                     "tokensPerMinute maxConcurrentRequests expiresAt project { name } } } }")["apiKeys"]["nodes"]
    made = next(k for k in stored if k["name"] == "from-the-console")
    assert (made["requestsPerMinute"], made["tokensPerMinute"], made["maxConcurrentRequests"]) == (120, None, 3), made
    assert made["expiresAt"].startswith("2099-12-31T23:59:59") and made["project"]["name"] == "default", made
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


def test_a_key_without_inference_is_told_why_the_playground_is_empty(server, page):
    page.goto(server.base + "/ui/")
    sign_in(page, server.admin)
    go(page, "Playground")
    notice = page.locator("[data-needs-inference]")
    expect(notice).to_contain_text("no inference scope")
    notice.get_by_role("link", name="Create a key with the inference scope").click()
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()


def test_the_playground_streams_an_answer_and_the_model_is_then_serving(server, page):
    user = create_key(server.base, server.admin, "default", ["read", "inference"], name="console-playground")
    page.goto(server.base + "/ui/")
    sign_in(page, user["secret"])
    # Asleep first, so the playground shows the wake the server measured.
    graphql(server.base, server.admin,
            "mutation($i: ModelActionInput!) { wakeModel(input: $i) { userErrors { message } } }",
            {"i": {"name": DEMO_MODEL}})
    sleep_model(server, DEMO_MODEL)
    go(page, "Models")
    expect(page.locator(f'tr[data-model="{DEMO_MODEL}"] .state')).to_have_text("sleeping", timeout=30_000)
    go(page, "Playground")
    page.get_by_label("Model", exact=True).select_option(DEMO_MODEL)
    page.get_by_label("Temperature").fill("0")
    page.get_by_label("Message").fill("What is the capital of France? Answer in one word.")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("[data-answer]")).to_contain_text("Paris", timeout=60_000)
    status = page.locator("[data-status]")
    expect(status).to_contain_text(re.compile(r"Model was sleeping: woke in \d+ ms \(server-measured\); first token after"))
    expect(page.locator("[data-request-id]")).to_have_text(re.compile(r"Request id: req_\w+"))
    expect(page.get_by_role("button", name="Send")).to_be_enabled(timeout=60_000)
    page.screenshot(path=str(SHOTS / "playground.png"))
    go(page, "Models")
    expect(page.locator(f'tr[data-model="{DEMO_MODEL}"] .state')).to_have_text("serving")
    page.get_by_role("button", name="Sign out").click()


def test_the_usage_page_charts_the_playgrounds_tokens(server, page):
    reader = create_key(server.base, server.admin, "default", ["read"], name="console-usage")
    page.goto(server.base + "/ui/")
    sign_in(page, reader["secret"])
    # Usage is written in batches: wait until the playground's wake is stored.
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3000))
    deadline = time.time() + 20
    while True:
        points = graphql(server.base, server.admin, "query($s: DateTime!) { usage(since: $s, bucket: MINUTE) { model woken } }",
                         {"s": since})["usage"]
        if any(p["model"] == DEMO_MODEL and p["woken"] > 0 for p in points) or time.time() > deadline:
            break
        time.sleep(0.2)
    go(page, "Usage")
    # The requests of the SDK tests and the playground are data points of the demo model and of their keys.
    for title in ["Tokens by model", "Requests by model", "Wakes by model"]:
        chart = page.get_by_role("img", name=title)
        expect(chart).to_be_visible()
        expect(chart.locator(f'rect[data-series="{DEMO_MODEL}"]').first).to_be_attached()
    latency = page.get_by_role("img", name="Mean wake latency by model")
    expect(latency.locator(f'circle[data-series="{DEMO_MODEL}"]').first).to_be_attached()
    by_key = page.get_by_role("img", name="Tokens by key")
    expect(by_key.locator("rect").first).to_be_attached()
    row = page.locator(f'tr[data-usage="{DEMO_MODEL}"]')
    expect(row).to_be_visible()
    assert int(row.locator("td").nth(1).inner_text()) >= 1
    page.screenshot(path=str(SHOTS / "usage.png"))
    page.get_by_role("button", name="Sign out").click()


def test_the_console_is_readable_at_phone_width_and_usable_by_keyboard(server, page):
    reader = create_key(server.base, server.admin, "default", ["read", "inference"], name="console-phone")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(server.base + "/ui/")
    # Keyboard only: the key field has the focus at once, Enter submits.
    expect(page.get_by_label("API key")).to_be_focused()
    page.keyboard.type(reader["secret"])
    page.keyboard.press("Enter")
    row = page.locator(f'tr[data-model="{DEMO_MODEL}"]')
    expect(row).to_be_visible()
    # Every page fits the screen: no sideways scrolling.
    for slug, ready in [("models", row), ("projects", page.locator("article.project").first),
                        ("keys", page.get_by_role("heading", name="API keys")),
                        ("usage", page.get_by_role("img", name="Tokens by model")),
                        ("audit", page.locator("table.audit tbody tr").first),
                        ("playground", page.get_by_role("button", name="Send"))]:
        page.goto(f"{server.base}/ui/#/{slug}")
        expect(ready).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, slug
        page.screenshot(path=str(SHOTS / f"{slug}-phone.png"))
    page.get_by_role("button", name="Sign out").click()
    page.set_viewport_size({"width": 1280, "height": 800})


def test_the_models_page_follows_state_live_and_a_manager_sleeps_wakes_and_scales(server, page):
    manager = create_key(server.base, server.admin, "default", ["read", "manage"], name="console-operator")
    page.goto(server.base + "/ui/#/models")
    sign_in(page, manager["secret"])
    expect(page.locator(".live")).to_have_text("● Live")
    row = page.locator(f'tr[data-model="{DEMO_MODEL}"]')
    expect(row).to_be_visible()
    if row.locator(".state").inner_text() != "serving":
        row.get_by_role("button", name="Wake").click()
        expect(row.locator(".state")).to_have_text("serving", timeout=60_000)

    # Another operator's change arrives through the subscription, well
    # inside the page's 15 s re-read.
    sleep_model(server, DEMO_MODEL)
    expect(row.locator(".state")).to_have_text("sleeping", timeout=5_000)
    expect(page.locator("[data-last-event]")).to_contain_text(f"{DEMO_MODEL} → sleeping (operator")
    page.screenshot(path=str(SHOTS / "models-sleeping.png"))

    # This console's own wake, then sleep.
    row.get_by_role("button", name="Wake").click()
    expect(row.locator(".state")).to_have_text("serving", timeout=60_000)
    expect(page.get_by_role("status")).to_contain_text("is serving")
    expect(row.locator("td").nth(6)).to_contain_text(re.compile(r"\d+ ms from (ram|disk)"))
    row.get_by_role("button", name="Sleep").click()
    expect(row.locator(".state")).to_have_text("sleeping", timeout=30_000)

    # Scaling: a bad idle timeout is refused by field; a good one is saved.
    row.get_by_role("button", name="Scaling").click()
    form = page.get_by_role("form", name=f"Scaling of {DEMO_MODEL}")
    form.get_by_label("Idle timeout").fill("soon")
    form.get_by_role("button", name="Save").click()
    expect(form.get_by_role("alert")).to_contain_text("idleTimeout")
    form.get_by_label("Idle timeout").fill("10m")
    page.screenshot(path=str(SHOTS / "models-scaling.png"))
    form.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("scaling saved")
    scaling = graphql(server.base, server.admin, "query($n: String!) { model(name: $n) { scaling { idleTimeout } } }",
                      {"n": DEMO_MODEL})
    assert scaling["model"]["scaling"]["idleTimeout"] == "10m"
    page.get_by_role("button", name="Sign out").click()


def test_the_audit_log_filters_and_names_who_acted(server, page):
    reader = create_key(server.base, server.admin, "default", ["read"], name="console-auditor")
    page.goto(server.base + "/ui/#/audit")
    sign_in(page, reader["secret"])
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    expect(page.locator("table.audit tbody tr").first).to_be_visible()
    filters = page.get_by_role("form", name="Filter the audit log")
    filters.get_by_label("Action").fill("model.sleep")
    filters.get_by_role("button", name="Filter").click()
    rows = page.locator("table.audit tbody tr")
    expect(rows.first).to_have_attribute("data-action", "model.sleep")
    assert set(rows.evaluate_all("rs => rs.map(r => r.dataset.action)")) == {"model.sleep"}
    expect(rows.filter(has_text="console-operator").first).to_be_visible()
    page.screenshot(path=str(SHOTS / "audit.png"))
    filters.get_by_label("Action").fill("")
    filters.get_by_label("Object").select_option("api_key")
    filters.get_by_role("button", name="Filter").click()
    expect(rows.first).to_have_attribute("data-action", re.compile(r"^api_key\."))
    rows.first.locator("summary").click()
    expect(rows.first.locator("pre.json")).to_contain_text("after:")
    page.get_by_role("button", name="Sign out").click()


def test_projects_and_nodes_pages(server, page):
    page.goto(server.base + "/ui/#/projects")
    sign_in(page, server.admin)
    service = page.locator('tr[data-service="default/default"]')
    expect(service).to_contain_text(DEMO_MODEL)
    page.get_by_label("Name", exact=True).fill("console-made")
    page.get_by_role("button", name="Create service").click()
    expect(page.locator('tr[data-service="default/console-made"]')).to_be_visible()
    page.get_by_label("Name", exact=True).fill("Not A Name!")
    page.get_by_role("button", name="Create service").click()
    expect(page.locator(".new-service").get_by_role("alert")).to_contain_text("name")
    page.screenshot(path=str(SHOTS / "projects.png"))
    # A service that holds models is not deleted, and the page says why; an empty one is.
    service.get_by_role("button", name="Delete").click()
    expect(page.locator("[data-service-error]")).not_to_be_empty()
    expect(service).to_be_visible()
    page.locator('tr[data-service="default/console-made"]').get_by_role("button", name="Delete").click()
    expect(page.locator('tr[data-service="default/console-made"]')).to_have_count(0)

    go(page, "Nodes")
    node = page.locator("article.node").first
    expect(node.get_by_role("meter", name="device")).to_be_visible()
    expect(node.get_by_role("meter", name="ram")).to_be_visible()
    expect(node.get_by_role("meter", name="disk")).to_be_visible()
    expect(node.locator('[data-tier="device"]')).to_contain_text(" of ")
    page.screenshot(path=str(SHOTS / "nodes.png"))
    page.get_by_role("button", name="Sign out").click()


def test_an_admin_adds_a_project_and_deletes_it_by_typing_its_name(server, page):
    page.goto(server.base + "/ui/#/projects")
    sign_in(page, server.admin)
    page.get_by_label("Project name").fill("console-project")
    page.get_by_label("Project description").fill("made in the console")
    page.get_by_role("button", name="Create project").click()
    project = page.locator('article[data-project="console-project"]')
    expect(project).to_contain_text("made in the console")
    expect(page.locator('tr[data-service="console-project/default"]')).to_be_visible()
    project.get_by_role("button", name="Delete project").click()
    confirm = project.get_by_label(re.compile("Type console-project to confirm"))
    delete = project.get_by_role("button", name="Delete for good")
    confirm.fill("console")
    expect(delete).to_be_disabled()
    confirm.fill("console-project")
    delete.click()
    expect(project).to_have_count(0)
    names = [p["name"] for p in graphql(server.base, server.admin, "{ projects(first: 50) { nodes { name } } }")["projects"]["nodes"]]
    assert "console-project" not in names and "default" in names, names
    page.get_by_role("button", name="Sign out").click()


def test_nodes_are_for_admins_only(server, page):
    reader = create_key(server.base, server.admin, "default", ["read"], name="console-no-nodes")
    page.goto(server.base + "/ui/")
    sign_in(page, reader["secret"])
    expect(page.get_by_role("navigation").get_by_role("link", name="Models", exact=True)).to_be_visible()
    expect(page.get_by_role("navigation").get_by_role("link", name="Nodes")).to_have_count(0)
    page.goto(server.base + "/ui/#/nodes")
    expect(page.get_by_role("alert")).to_contain_text("admin")
    page.get_by_role("button", name="Sign out").click()
