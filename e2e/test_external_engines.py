"""External engines under GreenThread: llama.cpp's real `llama-server`
(built by scripts/llama-server.sh) serving the demo model through
`greenthread serve`, driven by the official openai and anthropic SDKs;
sleep by stopping the engine, one wake for many requests, crashes, an
engine that never gets ready, and no engine outliving its node."""
import concurrent.futures
import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import anthropic
import httpx2 as httpx  # the HTTP client the SDKs are built on
import openai
import pytest

from conftest import DEMO_FILE, OUT, create_key, free_port, graphql, wait_healthy

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def llama_server() -> str:
    path = os.environ.get("GREENTHREAD_LLAMA_SERVER")
    if not path:
        pytest.fail("GREENTHREAD_LLAMA_SERVER must name llama-server: run the e2e tests through scripts/test.sh")
    return path


def config(models_dir: Path, binary: str) -> str:
    artifact = models_dir / DEMO_FILE
    engine = f'    engine: {{kind: llama-server, binary: {binary}, args: ["-c", "2048", "--threads", "2"]}}\n'
    return (
        "models:\n"
        f"  - name: qwen-ext\n    artifact: {artifact}\n" + engine
        # Fifty requests at once share one engine start: room for them all to wait.
        + f"  - name: qwen-nap\n    artifact: {artifact}\n    idle_timeout: 2s\n    max_queue: 64\n" + engine
        + f"  - name: never-ready\n    artifact: {artifact}\n"
        "    engine:\n"
        "      kind: command\n"
        "      argv: [/bin/sh, -c, 'echo loading shards for $0:$1 slowly; exec sleep 600', '{host}', '{port}']\n"
        "      ready_timeout: 12s\n"
    )


class Served:
    def __init__(self, base, proc, log, admin):
        self.base, self.proc, self.log, self.admin = base, proc, log, admin
        self.key = ""


def start(work: Path, text: str, log: Path, extra=()) -> Served:
    binary = os.environ["GREENTHREAD_BIN"]
    models = os.environ["GREENTHREAD_MODELS"]
    (work / "config.yaml").write_text(text)
    port = free_port()
    admin = "gt-e2e-admin-" + secrets.token_hex(16)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [binary, "serve", "--config", str(work / "config.yaml"), "--data-dir", str(work / "data"),
             "--listen", f"127.0.0.1:{port}", "--artifact-dir", models, "--wake-timeout", "8s", *extra],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "GREENTHREAD_ADMIN_TOKEN": admin},
        )
    served = Served(f"http://127.0.0.1:{port}", proc, log, admin)
    wait_healthy(served.base, proc, log)
    served.key = create_key(served.base, admin, "default", ["inference"])["secret"]
    return served


def stop(served: Served) -> int:
    served.proc.send_signal(signal.SIGTERM)
    try:
        return served.proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        served.proc.kill()
        raise


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    work = tmp_path_factory.mktemp("engines")
    OUT.mkdir(exist_ok=True)
    srv = start(work, config(Path(os.environ["GREENTHREAD_MODELS"]), llama_server()), OUT / "engines.log")
    try:
        yield srv
    finally:
        code = stop(srv)
    assert code == 0, srv.log.read_text()[-4000:]
    # Orphans would have a new parent: look for this run's engines anywhere.
    wait_for("the engines to stop with their server", lambda: not engines_of(None, "qwen-ext")
             and not engines_of(None, "qwen-nap"), timeout=15)


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=f"{served.base}/v1", api_key=served.key, max_retries=0, timeout=120)


def engines_of(parent: int | None, alias: str | None = None) -> list[int]:
    """Pids of llama-server processes (of `alias`, if given) whose parent is
    `parent` (any parent for `None`)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z" or (parent is not None and int(fields[1]) != parent):
            continue
        args = [a.decode(errors="replace") for a in argv]
        if args and args[0].endswith("llama-server") and (alias is None or alias in args):
            found.append(int(proc.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def model_status(srv: Served, name: str) -> dict:
    request = urllib.request.Request(f"{srv.base}/status", headers={"authorization": f"Bearer {srv.admin}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return next(m for m in json.loads(r.read())["models"] if m["name"] == name)


def wait_for(what, check, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def starts(srv: Served, name: str) -> int:
    """How many times the node started `name`'s engine, from the engine log GraphQL shows."""
    data = graphql(srv.base, srv.admin, "query($n: String!) { model(name: $n) { logs(last: 2000) } }", {"n": name})
    return sum("greenthread: starting" in line for line in data["model"]["logs"])


def ask(client, model="qwen-ext", **kw):
    kw.setdefault("max_tokens", 16)
    return client.chat.completions.create(
        model=model, temperature=0, messages=[{"role": "user", "content": "What is the capital of France? One word."}], **kw
    )


def test_the_openai_sdk_gets_whole_and_streamed_answers_with_the_engines_usage(client):
    whole = ask(client)
    assert "Paris" in whole.choices[0].message.content, whole
    assert whole.usage.prompt_tokens > 10 and 0 < whole.usage.completion_tokens <= 16
    chunks = list(ask(client, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert all(c.choices for c in chunks), "no usage chunk the client did not ask for"
    counted = list(ask(client, stream=True, stream_options={"include_usage": True}))
    assert counted[-1].usage and counted[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def engine_port(pid: int) -> int:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return int(argv[argv.index("--port") + 1])


def test_tools_reach_the_engine_and_its_answer_comes_back_as_it_gave_it(client, served):
    request = {"temperature": 0, "max_tokens": 40, "tools": [WEATHER], "tool_choice": "auto",
               "messages": [{"role": "user", "content": "What is the weather like in Paris today?"}]}
    through = client.chat.completions.create(model="qwen-ext", **request)
    [pid] = engines_of(served.proc.pid, "qwen-ext")
    direct = openai.OpenAI(base_url=f"http://127.0.0.1:{engine_port(pid)}/v1", api_key="none", max_retries=0)
    straight = direct.chat.completions.create(model="qwen-ext", **request)
    assert through.choices[0].message == straight.choices[0].message
    assert through.choices[0].finish_reason == straight.choices[0].finish_reason
    # The engine's template offered the tool: the model answers with it
    # (llama.cpp returns this model's call as text; GreenThread passes it on).
    message = through.choices[0].message
    said = message.content or "".join(c.function.name + c.function.arguments for c in message.tool_calls or [])
    assert "get_weather" in said and "Paris" in said, message


def test_the_anthropic_sdk_is_translated_onto_the_engine(served):
    client = anthropic.Anthropic(base_url=served.base, api_key=served.key, max_retries=0, timeout=120)
    question = [{"role": "user", "content": "What is the capital of France? One word."}]
    message = client.messages.create(model="qwen-ext", max_tokens=16, messages=question, extra_body={"temperature": 0})
    assert "Paris" in message.content[0].text and message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 10 and message.usage.output_tokens > 0
    with client.messages.stream(model="qwen-ext", max_tokens=16, messages=question, extra_body={"temperature": 0}) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "Paris" in text and final.content[0].text == text
    assert final.usage.output_tokens > 0


def test_the_responses_api_reaches_the_engines_own_and_continues_from_greenthreads_store(client):
    first = client.responses.create(
        model="qwen-ext", input="My name is Ada. Reply with just OK.", temperature=0, max_output_tokens=10
    )
    assert first.output_text and first.usage.input_tokens > 10 and first.store is True
    # Kept by GreenThread (the engine is asked to keep nothing), so a continuation works.
    assert client.responses.retrieve(first.id).output_text == first.output_text
    second = client.responses.create(
        model="qwen-ext", previous_response_id=first.id, input="What is my name?", temperature=0, max_output_tokens=20
    )
    assert second.previous_response_id == first.id
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert "Ada" in second.output_text
    events = list(client.responses.create(model="qwen-ext", input="Count to three.", max_output_tokens=12, stream=True))
    assert events[-1].type in ("response.completed", "response.incomplete")
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas and deltas == events[-1].response.output_text
    assert client.responses.retrieve(events[-1].response.id).id == events[-1].response.id


def test_the_engines_refusal_comes_back_in_openais_shape(client):
    long = "word " * 5000
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="qwen-ext", max_tokens=4, messages=[{"role": "user", "content": long}])
    assert refused.value.body["code"] == "engine_error", refused.value.body


def engine_lines(srv: Served, name: str) -> list[str]:
    data = graphql(srv.base, srv.admin, "query($n: String!) { model(name: $n) { logs(last: 2000) } }", {"n": name})
    return data["model"]["logs"]


def test_a_client_that_goes_away_stops_the_engines_generation(client, served):
    ask(client)
    before = len([l for l in engine_lines(served, "qwen-ext") if "stop processing" in l])
    stream = client.chat.completions.create(
        model="qwen-ext", max_tokens=400, stream=True, messages=[{"role": "user", "content": "Write a long story."}]
    )
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    # llama-server logs each finished slot with its token count: a cancelled
    # one stops after a few tokens, not at the 400 asked for (~15 s here).
    released = wait_for("the engine to release the slot", lambda: [
        l for l in engine_lines(served, "qwen-ext") if "stop processing" in l][before:], timeout=10)
    n_tokens = int(re.search(r"n_tokens = (\d+)", released[0]).group(1))
    assert n_tokens < 100, released


def test_idle_sleep_stops_the_engine_and_a_request_starts_it_again(client, served):
    ask(client, "qwen-nap")
    first = engines_of(served.proc.pid, "qwen-nap")
    assert len(first) == 1
    wait_for("qwen-nap to sleep", lambda: model_status(served, "qwen-nap")["state"] == "sleeping", timeout=30)
    wait_for("its engine to be gone", lambda: not alive(first[0]), timeout=15)
    assert model_status(served, "qwen-nap")["device_bytes"] == 0
    assert "Paris" in ask(client, "qwen-nap").choices[0].message.content
    assert engines_of(served.proc.pid, "qwen-nap") not in ([], first)


def test_fifty_concurrent_requests_share_one_engine_start(client, served):
    wait_for("qwen-nap to sleep", lambda: model_status(served, "qwen-nap")["state"] == "sleeping", timeout=30)
    before = starts(served, "qwen-nap")
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(lambda _: ask(client, "qwen-nap", max_tokens=4), range(50)))
    assert all(a.choices[0].message.content for a in answers)
    assert starts(served, "qwen-nap") == before + 1, "one wake served all fifty"


def test_an_engine_killed_mid_stream_ends_the_stream_with_an_error_and_restarts(client, served):
    ask(client)
    [pid] = engines_of(served.proc.pid, "qwen-ext")
    stream = client.chat.completions.create(
        model="qwen-ext", max_tokens=400, stream=True, messages=[{"role": "user", "content": "Write a long story."}]
    )
    with pytest.raises(openai.APIError) as broken:
        for i, _ in enumerate(stream):
            if i == 2:
                os.kill(pid, signal.SIGKILL)
    assert "stopped mid-stream" in str(broken.value)
    failed = wait_for("the model to fail", lambda: (s := model_status(served, "qwen-ext"))["state"] == "failed" and s)
    assert "signal 9" in failed["error"], failed
    assert "Paris" in ask(client).choices[0].message.content, "the next request restarts the engine"


def test_an_engine_that_never_gets_ready_is_a_503_then_failed_with_its_log(client, served):
    # A stream waiting for the same wake hears of it at once and every
    # second, then gets the refusal as an error event.
    heard = []

    def stream():
        body = {"model": "never-ready", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
        started = time.monotonic()
        with httpx.stream("POST", f"{served.base}/v1/chat/completions", json=body, timeout=60,
                          headers={"authorization": f"Bearer {served.key}"}) as r:
            heard.append(r.status_code)
            for line in r.iter_lines():
                if line:
                    heard.append((round(time.monotonic() - started, 1), line))

    listener = threading.Thread(target=stream)
    listener.start()
    with pytest.raises(openai.APIStatusError) as waiting:
        ask(client, "never-ready")
    assert waiting.value.status_code == 503 and waiting.value.response.headers.get("retry-after")
    listener.join(timeout=60)
    assert heard[0] == 200, heard
    comments = [(t, line) for t, line in heard[1:] if line.startswith(":")]
    assert comments and comments[0][0] < 1.0, f"the first word of the wake comes at once: {heard}"
    assert all(line.startswith((": waking never-ready from ", ": waiting for never-ready")) for _, line in comments)
    assert any(line.startswith(": waking never-ready from ") for _, line in comments), heard
    assert len(comments) >= 4, f"then one every second while the wake lasts: {heard}"
    last = heard[-1][1]
    assert last.startswith("data: ") and json.loads(last[6:])["error"]["code"] == "model_waking", heard
    failed = wait_for("never-ready to fail", lambda: (s := model_status(served, "never-ready"))["state"] == "failed" and s)
    assert "not ready within" in failed["error"] and "loading shards" in failed["error"], failed


def test_graphql_shows_the_engine_and_only_admins_choose_one(client, served):
    ask(client)
    data = graphql(served.base, served.admin, '{ model(name: "qwen-ext") { engine engineSpec logs(last: 5) } }')["model"]
    assert data["engine"] == "llama-server" and data["engineSpec"]["binary"] == llama_server()
    assert len(data["logs"]) == 5
    create = "mutation($i: CreateModelInput!) { createModel(input: $i) { model { name } userErrors { field code message } } }"
    artifact = str(Path(os.environ["GREENTHREAD_MODELS"]) / DEMO_FILE)
    engine = {"kind": "command", "argv": ["/usr/bin/env", "{host}", "{port}"]}
    manager = create_key(served.base, served.admin, "default", ["manage"], name="manager")["secret"]
    refused = graphql(served.base, manager, create, {"i": {"project": "default", "name": "sneaky", "artifact": artifact, "engine": engine}})
    assert refused["createModel"]["userErrors"][0]["code"] == "FORBIDDEN", refused
    assert refused["createModel"]["userErrors"][0]["field"] == "input.models.sneaky.engine"
    bad = {"kind": "command", "argv": ["srv", "{weights}"]}
    invalid = graphql(served.base, served.admin, create, {"i": {"project": "default", "name": "bad", "artifact": artifact, "engine": bad}})
    fields = [e["field"] for e in invalid["createModel"]["userErrors"]]
    # A relative program, an unknown placeholder, and neither {host} nor {port}.
    assert fields == ["input.models.bad.engine.argv[0]", "input.models.bad.engine.argv[1]",
                      "input.models.bad.engine.argv", "input.models.bad.engine.argv"], invalid
    unknown = graphql(served.base, served.admin, create, {"i": {"project": "default", "name": "bad", "artifact": artifact, "engine": {"kind": "ollama"}}})
    assert unknown["createModel"]["userErrors"][0]["field"].startswith("input.engine"), unknown
    models = graphql(served.base, served.admin, "{ models(first: 50) { edges { node { name } } } }")["models"]["edges"]
    assert {"sneaky", "bad"}.isdisjoint({e["node"]["name"] for e in models}), "nothing refused was stored"


def test_the_console_shows_an_engines_log(client, served):
    from playwright.sync_api import expect, sync_playwright
    from console import CHROMIUM_ARGS, chromium_path

    ask(client)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(served.base + "/ui/")
            page.get_by_label("API key").fill(served.admin)
            page.get_by_role("button", name="Sign in").click()
            row = page.locator('tr[data-model="qwen-ext"]')
            expect(row).to_be_visible()
            assert page.locator('tr[data-model="qwen-ext"] [data-action="log"]').count() == 1
            row.get_by_role("button", name="Engine log").click()
            log = page.get_by_role("region", name="Engine log of qwen-ext")
            expect(log.locator("pre.log")).to_contain_text("greenthread: starting")
            expect(log.locator("pre.log")).to_contain_text("llama-server")
        finally:
            browser.close()


def test_an_engine_on_a_remote_node_is_proxied_logged_and_its_crash_reported(tmp_path):
    binary, models = os.environ["GREENTHREAD_BIN"], os.environ["GREENTHREAD_MODELS"]
    token = "e2e-engine-cluster-token-0123456789"
    artifact = Path(models) / DEMO_FILE
    (tmp_path / "config.yaml").write_text(
        f"models:\n  - name: qwen-ext\n    artifact: {artifact}\n"
        f'    engine: {{kind: llama-server, binary: {llama_server()}, args: ["-c", "2048", "--threads", "2"]}}\n'
    )
    port, node_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    admin = "gt-e2e-admin-" + secrets.token_hex(16)
    logs = {name: open(OUT / f"engines-{name}.log", "w") for name in ("scheduler", "node")}
    scheduler = subprocess.Popen(
        [binary, "serve", "--no-local-node", "--cluster-token", token, "--config", str(tmp_path / "config.yaml"),
         "--data-dir", str(tmp_path / "control"), "--listen", f"127.0.0.1:{port}", "--wake-timeout", "60s"],
        stdout=logs["scheduler"], stderr=subprocess.STDOUT, env={**os.environ, "GREENTHREAD_ADMIN_TOKEN": admin},
    )
    node = subprocess.Popen(
        [binary, "node", "--control-plane", base, "--cluster-token", token, "--id", "node-e",
         "--listen", f"127.0.0.1:{node_port}", "--data-dir", str(tmp_path / "node"), "--artifact-dir", models],
        stdout=logs["node"], stderr=subprocess.STDOUT,
    )
    srv = Served(base, scheduler, OUT / "engines-scheduler.log", admin)
    try:
        wait_healthy(base, scheduler, srv.log)
        srv.key = create_key(base, admin, "default", ["inference"])["secret"]
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=srv.key, max_retries=2, timeout=120)
        wait_for("the node to join", lambda: model_status(srv, "qwen-ext") and _nodes(srv) == 1, timeout=30)
        assert "Paris" in ask(client).choices[0].message.content
        [pid] = engines_of(node.pid, "qwen-ext")
        assert starts(srv, "qwen-ext") == 1, "the scheduler reads the engine's log from its node"
        os.kill(pid, signal.SIGKILL)
        failed = wait_for("the crash to reach the scheduler",
                          lambda: (s := model_status(srv, "qwen-ext"))["state"] == "failed" and s, timeout=20)
        assert "signal 9" in failed["error"], failed
        assert "Paris" in ask(client).choices[0].message.content
        [restarted] = engines_of(node.pid, "qwen-ext")
    finally:
        for proc in (node, scheduler):
            proc.send_signal(signal.SIGTERM)
        for proc in (node, scheduler):
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
        for f in logs.values():
            f.close()
    assert not alive(restarted), "the node's engine stops with it"


def _nodes(srv: Served) -> int:
    request = urllib.request.Request(f"{srv.base}/status", headers={"authorization": f"Bearer {srv.admin}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return len(json.loads(r.read()).get("nodes", []))


def test_no_engine_outlives_a_node_killed_with_sigkill(tmp_path):
    text = config(Path(os.environ["GREENTHREAD_MODELS"]), llama_server())
    srv = start(tmp_path, text, OUT / "engines-killed.log")
    try:
        client = openai.OpenAI(base_url=f"{srv.base}/v1", api_key=srv.key, max_retries=0, timeout=120)
        ask(client)
        [pid] = engines_of(srv.proc.pid, "qwen-ext")
    finally:
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(timeout=10)
    wait_for("the orphaned engine to die with its node", lambda: not alive(pid), timeout=10)
