"""Deploying from the console in real headless Chromium: a model deployed
through the form from the real demo artifact, planned as a diff, applied,
served in the playground, edited through the diff and removed; the form
by keyboard alone; custom domains added, verified against a real DNS
server on loopback, and removed."""
import json
import re
import urllib.request

from playwright.sync_api import expect

from conftest import DEMO_FILE, DEMO_MODEL, create_key, graphql
from console import SHOTS, browser, go, page, sign_in  # noqa: F401 (fixtures)

DEPLOYED = "console-coder"


def model_names(server) -> list[str]:
    return [m["name"] for m in graphql(server.base, server.admin, "{ models(first: 100) { nodes { name } } }")["models"]["nodes"]]


def test_a_model_is_deployed_through_the_plan_served_edited_and_removed(server, page):
    user = create_key(server.base, server.admin, "default", ["read", "manage", "inference"], name="console-deployer")
    page.goto(server.base + "/ui/#/models")
    sign_in(page, user["secret"])
    page.get_by_role("button", name="Deploy model").click()
    form = page.get_by_role("form", name="Deploy a model")
    expect(form.get_by_label("Name", exact=True)).to_be_focused()

    # The server's refusals come back beside the field they concern.
    form.get_by_label("Name", exact=True).fill(DEMO_MODEL)
    artifact = next(o for o in form.get_by_label("Artifact file").locator("option").all_inner_texts() if DEMO_FILE in o)
    form.get_by_label("Artifact file").select_option(label=artifact)
    expect(form.get_by_label("Artifact", exact=True)).to_have_value(re.compile(re.escape(DEMO_FILE) + "$"))
    form.get_by_role("button", name="Plan").click()
    expect(form.locator('[data-error-for="name"]')).to_contain_text("twice")
    expect(form.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")
    form.get_by_label("Name", exact=True).fill(DEPLOYED)
    form.get_by_label("Idle timeout").fill("soon")
    form.get_by_role("button", name="Plan").click()
    expect(form.locator('[data-error-for="idle_timeout"]')).not_to_be_empty()
    expect(form.locator('[data-error-for="name"]')).to_be_empty()
    assert DEPLOYED not in model_names(server), "a refused plan writes nothing"

    form.get_by_label("Idle timeout").fill("2m")
    form.get_by_label("Kind").select_option("chat")
    form.get_by_role("button", name="Plan").click()
    plan = page.get_by_role("region", name="Plan")
    expect(plan.locator("[data-plan-summary]")).to_have_text("Plan: 1 to create, 0 to update, 0 to delete.")
    expect(plan.locator(f'[data-change="model/{DEPLOYED}"] [data-field="idle_timeout"] .after')).to_have_text("2m")
    assert DEPLOYED not in model_names(server), "a plan writes nothing"
    page.screenshot(path=str(SHOTS / "deploy-plan.png"), full_page=True)
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("status")).to_contain_text(f"{DEPLOYED} is deployed.")
    row = page.locator(f'tr[data-model="{DEPLOYED}"]')
    expect(row).to_be_visible()
    assert DEPLOYED in model_names(server)

    # It serves in the playground.
    go(page, "Playground")
    page.get_by_label("Model", exact=True).select_option(DEPLOYED)
    page.get_by_label("Temperature").fill("0")
    page.get_by_label("Message").fill("What is the capital of France? Answer in one word.")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("[data-answer]")).to_contain_text("Paris", timeout=90_000)
    expect(page.get_by_role("button", name="Send")).to_be_enabled(timeout=60_000)

    # Edited through the diff: only the idle timeout changes.
    go(page, "Models")
    row.get_by_role("button", name="Edit").click()
    form = page.get_by_role("form", name=f"Edit {DEPLOYED}")
    expect(form.get_by_label("Idle timeout")).to_have_value("2m")
    expect(form.get_by_label("Name", exact=True)).to_have_attribute("readonly", "")
    form.get_by_label("Idle timeout").fill("7m")
    form.get_by_role("button", name="Plan").click()
    change = page.locator(f'[data-change="model/{DEPLOYED}"]')
    expect(change).to_have_attribute("data-action", "update")
    expect(change.locator("tbody tr")).to_have_count(1)
    expect(change.locator('[data-field="idle_timeout"] .before')).to_have_text("2m")
    expect(change.locator('[data-field="idle_timeout"] .after')).to_have_text("7m")
    page.screenshot(path=str(SHOTS / "deploy-edit-diff.png"), full_page=True)
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("status")).to_contain_text("changes applied")
    scaling = graphql(server.base, server.admin, "query($n: String!) { model(name: $n) { scaling { idleTimeout } } }",
                      {"n": DEPLOYED})
    assert scaling["model"]["scaling"]["idleTimeout"] == "7m", scaling

    # Removed once its name is typed, through a destructive plan.
    row.get_by_role("button", name="Remove").click()
    confirm = page.get_by_label(f"Type {DEPLOYED} to confirm")
    plan_removal = page.get_by_role("button", name="Plan removal")
    confirm.fill("console")
    expect(plan_removal).to_be_disabled()
    confirm.fill(DEPLOYED)
    plan_removal.click()
    change = page.locator(f'[data-change="model/{DEPLOYED}"]')
    expect(change).to_have_attribute("data-action", "delete")
    expect(change.locator(".danger")).to_have_text("destructive")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("status")).to_contain_text(f"{DEPLOYED} is removed.")
    expect(row).to_have_count(0)
    assert DEPLOYED not in model_names(server)
    assert DEMO_MODEL in model_names(server), "the rest of the project is untouched"
    page.get_by_role("button", name="Sign out").click()


def test_the_deploy_form_works_by_keyboard_alone(server, page):
    manager = create_key(server.base, server.admin, "default", ["read", "manage"], name="console-keyboard")
    artifact = next(a["path"] for a in graphql(server.base, manager["secret"], "{ artifacts { path } }")["artifacts"]
                    if a["path"].endswith(DEMO_FILE))
    page.goto(server.base + "/ui/#/models")
    expect(page.get_by_label("API key")).to_be_focused()
    page.keyboard.type(manager["secret"])
    page.keyboard.press("Enter")
    deploy = page.get_by_role("button", name="Deploy model")
    expect(deploy).to_be_visible()
    # Tab from the top of the page until the button has the focus.
    for _ in range(30):
        if page.evaluate("document.activeElement && document.activeElement.dataset.action") == "deploy":
            break
        page.keyboard.press("Tab")
    expect(deploy).to_be_focused()
    page.keyboard.press("Enter")
    form = page.get_by_role("form", name="Deploy a model")
    expect(form.get_by_label("Name", exact=True)).to_be_focused()
    page.keyboard.type("keyboard-coder")
    page.keyboard.press("Tab")  # the artifact file list
    expect(form.get_by_label("Artifact file")).to_be_focused()
    page.keyboard.press("Tab")
    expect(form.get_by_label("Artifact", exact=True)).to_be_focused()
    page.keyboard.type(artifact)
    page.keyboard.press("Enter")  # submits the form: the plan
    apply = page.get_by_role("button", name="Apply")
    expect(apply).to_be_focused()
    expect(page.locator('[data-change="model/keyboard-coder"]')).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("keyboard-coder is deployed.")
    assert "keyboard-coder" in model_names(server)
    data = graphql(server.base, server.admin, "mutation($i: DeleteModelInput!) { deleteModel(input: $i) { userErrors { message } } }",
                   {"i": {"name": "keyboard-coder"}})
    assert data["deleteModel"]["userErrors"] == [], data


def test_a_custom_domain_is_added_verified_through_dns_and_removed(server, dns, page):
    manager = create_key(server.base, server.admin, "default", ["read", "manage"], name="console-domains")
    page.goto(server.base + "/ui/#/projects")
    sign_in(page, manager["secret"])
    section = page.get_by_role("region", name="Custom domains")
    section.get_by_label("Hostname").fill("not a hostname")
    section.get_by_role("button", name="Add domain").click()
    expect(section.get_by_role("form", name="Add a custom domain").get_by_role("alert")).to_contain_text("hostname")
    section.get_by_label("Hostname").fill("chat.console-e2e.test")
    section.get_by_label("Routes to").select_option("default/default")
    section.get_by_role("button", name="Add domain").click()
    line = section.locator('[data-domain="chat.console-e2e.test"]')
    expect(line.locator("[data-verified]")).to_have_text("unverified")
    record_name = line.locator("[data-record-name]").inner_text()
    record_value = line.locator("[data-record-value]").inner_text()
    assert record_name == "_greenthread-challenge.chat.console-e2e.test", record_name

    # Before the record is published, verifying says why it failed.
    line.get_by_role("button", name="Verify").click()
    expect(section.locator("[data-domain-error]")).to_contain_text("TXT")
    dns.publish(record_name, record_value)
    line.get_by_role("button", name="Verify").click()
    expect(line.locator("[data-verified]")).to_have_text("verified")
    expect(page.locator('tr[data-service="default/default"]')).to_contain_text("chat.console-e2e.test")
    page.screenshot(path=str(SHOTS / "domains.png"), full_page=True)
    # Requests to the hostname now reach the service's models.
    listed = json.loads(urllib.request.urlopen(urllib.request.Request(
        server.base + "/v1/models", headers={"authorization": f"Bearer {server.api_key}", "host": "chat.console-e2e.test"}),
        timeout=10).read())
    assert DEMO_MODEL in [m["id"] for m in listed["data"]], listed

    line.get_by_role("button", name="Remove").click()
    expect(line).to_have_count(0)
    domains = graphql(server.base, server.admin, "{ domains { hostname } }")["domains"]
    assert all(d["hostname"] != "chat.console-e2e.test" for d in domains), domains
    page.get_by_role("button", name="Sign out").click()
