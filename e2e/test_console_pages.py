"""The console's conversation playground and model page in real headless
Chromium against the real demo model: several turns after a system
prompt, a tool call shown, Stop cancelling a stream, speed shown; a
model's page with its state band, changes, replicas, rates and time to
first token; charts that read out the bucket under the pointer."""
import json
import re
import time

from playwright.sync_api import expect

from conftest import DEMO_MODEL, create_key, graphql
from console import SHOTS, browser, go, page, sign_in  # noqa: F401 (fixtures)

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def playground(server, page, name: str):
    user = create_key(server.base, server.admin, "default", ["read", "inference"], name=name)
    page.goto(server.base + "/ui/#/playground")
    sign_in(page, user["secret"])
    page.get_by_label("Model", exact=True).select_option(DEMO_MODEL)
    page.get_by_label("Temperature").fill("0")


def test_a_conversation_keeps_its_turns_and_system_prompt_and_shows_its_speed(server, page):
    playground(server, page, "console-conversation")
    page.get_by_label("System prompt").fill("You answer with the name of one city and nothing else.")
    page.get_by_label("Max tokens").fill("16")
    page.get_by_label("Message").fill("What is the capital of France?")
    page.get_by_role("button", name="Send").click()
    answers = page.locator('[data-role="assistant"] .markdown')
    expect(answers.first).to_contain_text("Paris", timeout=60_000)
    expect(page.get_by_role("button", name="Send")).to_be_enabled(timeout=60_000)
    expect(page.locator("[data-status]")).to_contain_text(re.compile(r"first token after \d+ ms"))
    expect(page.locator("[data-speed]")).to_have_text(re.compile(r"^\d+ tokens( at [\d.]+ tokens/s)?$"))
    # The second turn is asked with the first in context.
    page.get_by_label("Message").fill("And of Italy?")
    page.get_by_label("Message").press("Control+Enter")
    expect(answers).to_have_count(2)
    expect(answers.nth(1)).to_contain_text("Rome", timeout=60_000)
    expect(page.locator('[data-role="user"]')).to_have_count(2)
    expect(page.locator("[data-answer]")).to_have_count(1)
    page.screenshot(path=str(SHOTS / "playground-conversation.png"), full_page=True)
    page.get_by_role("button", name="New conversation").click()
    expect(page.locator(".turn")).to_have_count(0)
    page.get_by_role("button", name="Sign out").click()


def test_a_tool_call_is_shown_and_stop_cancels_a_stream(server, page):
    playground(server, page, "console-tools")
    page.get_by_text("Tools", exact=True).click()
    page.get_by_label(re.compile("^Tools")).fill(json.dumps([WEATHER]))
    page.get_by_label("Max tokens").fill("100")
    page.get_by_label("Message").fill("What is the weather like in Paris today?")
    page.get_by_role("button", name="Send").click()
    call = page.locator('[data-tool-call="get_weather"]')
    expect(call).to_contain_text("Paris", timeout=60_000)
    expect(page.get_by_role("button", name="Send")).to_be_enabled(timeout=60_000)

    # A long answer, stopped as soon as it starts: the server stops too, and the text stops growing.
    page.get_by_role("button", name="New conversation").click()
    page.get_by_label(re.compile("^Tools")).fill("")
    page.get_by_label("Max tokens").fill("1500")
    page.get_by_label("Message").fill("Count from 1 to 1000, one number per line.")
    page.get_by_role("button", name="Send").click()
    answer = page.locator("[data-answer]")
    expect(answer).to_contain_text("3", timeout=60_000)
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.locator("[data-status]")).to_have_text("Stopped.")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    stopped_at = answer.inner_text()
    page.wait_for_timeout(1500)
    assert answer.inner_text() == stopped_at
    # Stopped near the start of the count (the model may name 1000 as it begins; up to 1500
    # tokens it would list hundreds of numbers).
    assert len(re.findall(r"\d+", stopped_at)) < 200, stopped_at
    page.get_by_role("button", name="Sign out").click()


def test_a_models_page_shows_its_last_hour_replicas_and_latency(server, page):
    # Asleep, then woken by a streamed request: the page has changes and a time to first token.
    graphql(server.base, server.admin, "mutation($i: ModelActionInput!) { wakeModel(input: $i) { userErrors { message } } }",
            {"i": {"name": DEMO_MODEL}})
    graphql(server.base, server.admin, "mutation($i: ModelActionInput!) { sleepModel(input: $i) { userErrors { message } } }",
            {"i": {"name": DEMO_MODEL}})
    playground(server, page, "console-model-page")
    page.get_by_label("Message").fill("Say hi.")
    page.get_by_label("Max tokens").fill("8")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("button", name="Send")).to_be_enabled(timeout=60_000)
    go(page, "Models")
    page.get_by_role("link", name=DEMO_MODEL, exact=True).click()
    expect(page).to_have_url(re.compile(rf"#/models/{re.escape(DEMO_MODEL)}$"))
    expect(page.get_by_role("heading", name=DEMO_MODEL)).to_be_visible()
    expect(page.locator("[data-model-state]")).to_have_text("serving")
    band = page.get_by_role("img", name="State over the last hour")
    expect(band.locator('rect[data-state="serving"]').first).to_be_attached()
    expect(page.locator('tr[data-change-to="sleeping"][data-cause="operator"]').first).to_be_visible()
    expect(page.locator('tr[data-change-to="serving"]').first).to_be_visible()
    expect(page.locator('tr[data-node="local"]')).to_contain_text("serving")
    expect(page.locator('[data-stat="ttft"]')).to_contain_text(re.compile(r"p50 \d+ ms"))
    assert int(re.search(r"\((\d+) streamed\)", page.locator(".stats").inner_text()).group(1)) >= 1
    page.screenshot(path=str(SHOTS / "model-page.png"), full_page=True)
    # Another operator's sleep shows up live.
    graphql(server.base, server.admin, "mutation($i: ModelActionInput!) { sleepModel(input: $i) { userErrors { message } } }",
            {"i": {"name": DEMO_MODEL}})
    expect(page.locator("[data-model-state]")).to_have_text("sleeping", timeout=10_000)
    page.get_by_role("link", name="← All models").click()
    expect(page.get_by_role("heading", name="Models")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()


def test_a_chart_reads_out_the_bucket_under_the_pointer(server, page):
    reader = create_key(server.base, server.admin, "default", ["read"], name="console-hover")
    # Usage is written in batches: wait until this module's requests are stored.
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3000))
    deadline = time.time() + 20
    while time.time() < deadline:
        points = graphql(server.base, server.admin, "query($s: DateTime!) { usage(since: $s, bucket: MINUTE) { model requests } }",
                         {"s": since})["usage"]
        if any(p["model"] == DEMO_MODEL and p["requests"] > 0 for p in points):
            break
        time.sleep(0.2)
    page.goto(server.base + "/ui/#/usage")
    sign_in(page, reader["secret"])
    chart = page.locator('[data-chart="Requests by model"]')
    expect(chart.locator("text.unit")).to_have_text("requests")
    expect(chart.locator("text.tick:not(.unit)").first).to_have_text("0")
    bar = chart.locator(f'rect[data-series="{DEMO_MODEL}"]').last
    expect(bar).to_be_attached()
    box = bar.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(chart.locator("[data-readout]")).to_contain_text(re.compile(rf"\d\d:\d\d–\d\d:\d\d: .*{re.escape(DEMO_MODEL)} \d+ requests"))
    page.get_by_role("button", name="Sign out").click()
