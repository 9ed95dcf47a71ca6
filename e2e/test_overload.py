"""Overload control seen by the real SDKs. A model with one sequence and no
queue refuses a second request at once — 503 `overloaded_error` with
Retry-After on OpenAI's routes, 529 on Anthropic's — and the SDKs' own
retries then succeed once the first request is done. A key with
`maxConcurrentRequests` gets 429 past it while another key is served, and
each request's `x-request-id` finds its usage record through GraphQL."""
import os
import signal
import subprocess
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import anthropic
import httpx2 as httpx  # the HTTP client the SDKs are built on
import openai
import pytest

from conftest import DEMO_FILE, DEMO_MODEL, OUT, create_key, free_port, graphql, wait_healthy

LONG = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
SHORT = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory):
    """A server whose demo model runs one sequence and queues none."""
    work = tmp_path_factory.mktemp("overload")
    config = work / "config.yaml"
    config.write_text(
        f"models:\n  - name: {DEMO_MODEL}\n    artifact: {Path(os.environ['GREENTHREAD_MODELS']) / DEMO_FILE}\n"
        "    context_length: 2048\n    max_concurrency: 1\n    max_queue: 0\n    min_replicas: 1\n"
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    OUT.mkdir(exist_ok=True)
    log = OUT / "overload.log"
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            [os.environ["GREENTHREAD_BIN"], "serve", "--open", "--config", str(config), "--data-dir",
             str(work / "data"), "--listen", f"127.0.0.1:{port}"],
            stdout=log_file, stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(base, proc, log)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


@contextmanager
def busy(client: openai.OpenAI, max_tokens: int = 48):
    """Holds the model's one slot with a stream until the block ends and the
    stream has run out."""
    stream = client.chat.completions.create(
        model=DEMO_MODEL, messages=LONG, max_tokens=max_tokens, temperature=0, stream=True)
    next(stream)
    rest = threading.Thread(target=lambda: list(stream))
    rest.start()
    try:
        yield
    finally:
        rest.join(timeout=120)


def statuses_client():
    statuses = []
    return statuses, httpx.Client(event_hooks={"response": [lambda r: statuses.append(r.status_code)]})


def test_openai_routes_answer_503_overloaded_and_the_sdk_retry_succeeds(one_slot):
    holder = openai.OpenAI(base_url=f"{one_slot}/v1", api_key="unused", max_retries=0, timeout=120)
    with busy(holder):
        with pytest.raises(openai.InternalServerError) as refused:
            holder.chat.completions.create(model=DEMO_MODEL, messages=SHORT, max_tokens=2)
        assert refused.value.status_code == 503
        assert refused.value.response.headers["retry-after"] == "1"
        assert refused.value.body["type"] == "overloaded_error" and refused.value.body["code"] == "model_overloaded"

        statuses, http = statuses_client()
        patient = openai.OpenAI(base_url=f"{one_slot}/v1", api_key="unused", max_retries=6, timeout=120,
                                http_client=http)
        reply = patient.chat.completions.create(model=DEMO_MODEL, messages=SHORT, max_tokens=2, temperature=0)
    assert reply.choices[0].message.content
    assert statuses[0] == 503 and statuses[-1] == 200, statuses


def test_anthropic_routes_answer_529_and_the_sdk_retry_succeeds(one_slot):
    holder = openai.OpenAI(base_url=f"{one_slot}/v1", api_key="unused", max_retries=0, timeout=120)
    strict = anthropic.Anthropic(base_url=one_slot, api_key="unused", max_retries=0, timeout=120)
    with busy(holder):
        with pytest.raises(anthropic.APIStatusError) as refused:
            strict.messages.create(model=DEMO_MODEL, max_tokens=2, messages=SHORT)
        assert refused.value.status_code == 529
        assert refused.value.body["error"]["type"] == "overloaded_error"

        statuses, http = statuses_client()
        patient = anthropic.Anthropic(base_url=one_slot, api_key="unused", max_retries=6, timeout=120,
                                      http_client=http)
        message = patient.messages.create(model=DEMO_MODEL, max_tokens=2, messages=SHORT)
    assert message.content and message.content[0].text
    assert statuses[0] == 529 and statuses[-1] == 200, statuses


def test_a_key_past_its_concurrency_gets_429_while_another_key_is_served(server):
    limited = create_key(server.base, server.admin, "default", ["inference"], name="one-at-a-time",
                         maxConcurrentRequests=1)["secret"]
    holder = openai.OpenAI(base_url=f"{server.base}/v1", api_key=limited, max_retries=0, timeout=120)
    other = openai.OpenAI(base_url=f"{server.base}/v1", api_key=server.api_key, max_retries=0, timeout=120)
    with busy(holder):
        with pytest.raises(openai.RateLimitError) as refused:
            holder.chat.completions.create(model=DEMO_MODEL, messages=SHORT, max_tokens=2)
        assert refused.value.body["code"] == "concurrency_limit_exceeded"
        assert refused.value.response.headers["retry-after"] == "1"
        served = other.chat.completions.with_raw_response.create(
            model=DEMO_MODEL, messages=SHORT, max_tokens=2, extra_headers={"x-request-id": "overload-other-1"})
        assert served.http_response.status_code == 200
    assert served.headers["x-request-id"] == "overload-other-1"

    since = (datetime.now(timezone.utc) - timedelta(minutes=10)).isoformat()
    query = """query($since: DateTime!, $id: String) {
        usageRecords(since: $since, requestId: $id) { requestId model status outputTokens } }"""
    records = []
    for _ in range(50):  # usage is written in batches, every half second
        records = graphql(server.base, server.admin, query, {"since": since, "id": "overload-other-1"})["usageRecords"]
        if records:
            break
        threading.Event().wait(0.2)
    assert [(r["requestId"], r["model"], r["status"]) for r in records] == [("overload-other-1", DEMO_MODEL, "ok")]
    assert records[0]["outputTokens"] > 0
