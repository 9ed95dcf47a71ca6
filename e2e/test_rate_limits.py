"""Per-key rate limits seen by the `openai` SDK: a 429 with Retry-After,
which the SDK waits out and retries successfully. The server counts in
2-second windows here (`--rate-window 2s`), so a limit of 30 a minute is
one request per window."""
import time

import httpx2 as httpx  # the HTTP client the openai SDK is built on
import openai
import pytest

from conftest import DEMO_MODEL, create_key


def ask(client):
    return client.chat.completions.create(
        model=DEMO_MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2, temperature=0
    )


def test_a_limited_key_gets_429_and_the_sdk_retry_succeeds(server):
    key = create_key(server.base, server.admin, "default", ["inference"], name="limited", requestsPerMinute=30)["secret"]
    strict = openai.OpenAI(base_url=f"{server.base}/v1", api_key=key, max_retries=0, timeout=60)
    refused = None
    for _ in range(3):
        try:
            ask(strict)
        except openai.RateLimitError as e:
            refused = e
            break
    assert refused is not None, "one request per window: the second in a window is refused"
    headers = refused.response.headers
    assert 1 <= int(headers["retry-after"]) <= 2
    assert headers["x-ratelimit-limit-requests"] == "1"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.body["code"] == "rate_limit_exceeded"

    # Wait for a new window and take its one request, so the patient client's
    # first try falls in a window that is already used up. On a loaded
    # machine the window may roll over between the two: then try again.
    statuses = []
    http = httpx.Client(event_hooks={"response": [lambda r: statuses.append(r.status_code)]})
    patient = openai.OpenAI(base_url=f"{server.base}/v1", api_key=key, max_retries=3, timeout=60, http_client=http)
    for _ in range(5):
        time.sleep(int(headers["retry-after"]))
        ask(strict)
        statuses.clear()
        reply = ask(patient)
        assert reply.choices[0].message.content is not None
        if statuses[0] == 429:
            break
    assert statuses[0] == 429 and statuses[-1] == 200, statuses
