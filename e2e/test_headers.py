"""The headers the SDKs read, against the real binary: the request id the
openai and anthropic SDKs expose as `_request_id` (and on their errors),
the server's processing time, and a limited key's standing on answers that
were admitted, in each ecosystem's names."""
import anthropic
import openai

from conftest import DEMO_MODEL, create_key

QUESTION = [{"role": "user", "content": "Say OK."}]


def test_every_answer_has_a_request_id_the_openai_sdk_exposes(server):
    client = openai.OpenAI(base_url=f"{server.base}/v1", api_key=server.api_key, max_retries=0, timeout=120)
    raw = client.chat.completions.with_raw_response.create(model=DEMO_MODEL, messages=QUESTION, max_tokens=2)
    completion = raw.parse()
    assert raw.headers["x-request-id"].startswith("req_")
    assert completion._request_id == raw.headers["x-request-id"]
    assert int(raw.headers["openai-processing-ms"]) >= 0
    other = client.chat.completions.create(model=DEMO_MODEL, messages=QUESTION, max_tokens=2)
    assert other._request_id != completion._request_id, "one id per request"
    mine = client.chat.completions.create(
        model=DEMO_MODEL, messages=QUESTION, max_tokens=2, extra_headers={"x-request-id": "trace-7f3a:1"}
    )
    assert mine._request_id == "trace-7f3a:1", "a client's own id is kept"
    try:
        client.chat.completions.create(model="no-such-model", messages=QUESTION)
        raise AssertionError("an unknown model is refused")
    except openai.NotFoundError as refused:
        assert refused.request_id and refused.request_id.startswith("req_")


def test_a_limited_keys_standing_comes_with_every_admitted_answer(server):
    key = create_key(server.base, server.admin, "default", ["inference"], name="standing",
                     requestsPerMinute=600, tokensPerMinute=600000)["secret"]
    client = openai.OpenAI(base_url=f"{server.base}/v1", api_key=key, max_retries=0, timeout=120)
    raw = client.chat.completions.with_raw_response.create(model=DEMO_MODEL, messages=QUESTION, max_tokens=2)
    headers = raw.headers
    # --rate-window 2s: 600 a minute is 20 a window.
    assert headers["x-ratelimit-limit-requests"] == "20"
    assert 0 <= int(headers["x-ratelimit-remaining-requests"]) <= 19
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert int(headers["x-ratelimit-limit-tokens"]) == 20000
    unlimited = openai.OpenAI(base_url=f"{server.base}/v1", api_key=server.api_key, max_retries=0, timeout=120)
    plain = unlimited.chat.completions.with_raw_response.create(model=DEMO_MODEL, messages=QUESTION, max_tokens=2)
    assert "x-ratelimit-limit-requests" not in plain.headers, "a key without limits has no standing to report"


def test_the_anthropic_sdk_reads_its_request_id_and_ratelimit_headers(server):
    key = create_key(server.base, server.admin, "default", ["inference"], name="anthropic-standing",
                     requestsPerMinute=600)["secret"]
    client = anthropic.Anthropic(base_url=server.base, api_key=key, max_retries=0, timeout=120)
    raw = client.messages.with_raw_response.create(model=DEMO_MODEL, max_tokens=2, messages=QUESTION)
    message = raw.parse()
    assert message._request_id and message._request_id.startswith("req_")
    assert raw.headers["request-id"] == raw.headers["x-request-id"] == message._request_id
    assert raw.headers["anthropic-ratelimit-requests-limit"] == "20"
    assert int(raw.headers["anthropic-ratelimit-requests-remaining"]) <= 19
    assert raw.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
