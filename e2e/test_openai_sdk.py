"""The official `openai` Python SDK against `greenthread serve` with the real demo model."""
import concurrent.futures
import json
import urllib.error
import urllib.request

import openai
import pytest

from conftest import DEMO_ALIAS, DEMO_MODEL, EMBED_MODEL


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.base}/v1", api_key=server.api_key, max_retries=0, timeout=120)


def ask(client, question, **kwargs):
    kwargs.setdefault("temperature", 0)
    kwargs.setdefault("max_tokens", 40)
    return client.chat.completions.create(model=DEMO_MODEL, messages=[{"role": "user", "content": question}], **kwargs)


def test_models_list_shows_the_demo_and_embedding_models(client):
    ids = [m.id for m in client.models.list()]
    assert sorted(ids) == sorted([DEMO_MODEL, EMBED_MODEL])
    assert client.models.retrieve(DEMO_ALIAS).id == DEMO_MODEL


def test_chat_gives_a_sensible_answer_with_real_usage(client):
    reply = ask(client, "What is the capital of France? Answer in one word.")
    text = reply.choices[0].message.content
    assert "Paris" in text
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens > 10
    assert reply.usage.completion_tokens >= 1
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_the_alias_reaches_the_same_model(client):
    by_alias = client.chat.completions.create(
        model=DEMO_ALIAS, messages=[{"role": "user", "content": "Say OK."}], temperature=0, max_tokens=8
    )
    by_name = ask(client, "Say OK.", max_tokens=8)
    assert by_alias.model == DEMO_MODEL
    assert by_alias.choices[0].message.content == by_name.choices[0].message.content


def test_streamed_chat_shares_one_id_and_ends_with_usage(client):
    whole = ask(client, "Count from 1 to 5, separated by commas.")
    stream = ask(client, "Count from 1 to 5, separated by commas.", stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert "1, 2, 3" in text
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_completions_continue_a_prompt(client):
    out = client.completions.create(model=DEMO_MODEL, prompt="def add(a, b):\n    return", max_tokens=6, temperature=0)
    assert out.choices[0].text.strip().startswith("a + b")
    assert out.usage.completion_tokens <= 6


def test_the_per_model_base_url_works_with_the_sdk(server):
    per_model = openai.OpenAI(base_url=f"{server.base}/{DEMO_MODEL}/v1", api_key=server.api_key, max_retries=0)
    assert [m.id for m in per_model.models.list()] == [DEMO_MODEL]
    reply = per_model.chat.completions.create(
        model=DEMO_MODEL, messages=[{"role": "user", "content": "What is 2+2? Answer with a digit."}], temperature=0, max_tokens=5
    )
    assert "4" in reply.choices[0].message.content


def test_stop_sequences_and_max_tokens(client):
    cut = ask(client, "Count from 1 to 10, separated by commas.", stop=["4"])
    assert "4" not in cut.choices[0].message.content
    assert cut.choices[0].message.content.rstrip(", ").endswith("3")
    assert cut.choices[0].finish_reason == "stop"
    short = ask(client, "Write a long story about a dragon.", max_tokens=5)
    assert short.choices[0].finish_reason == "length"
    assert short.usage.completion_tokens == 5


def test_unknown_model_is_a_not_found_error(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert err.value.code == "model_not_found"
    assert err.value.status_code == 404


def test_bad_parameters_are_bad_request_errors_naming_the_parameter(client):
    with pytest.raises(openai.BadRequestError) as err:
        ask(client, "hi", temperature=5)
    assert err.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as err:
        ask(client, "hi", extra_body={"n": 1000})
    assert err.value.param == "n"
    with pytest.raises(openai.BadRequestError) as err:
        ask(client, "word " * 3000)
    assert err.value.code == "context_length_exceeded"


def test_malformed_json_and_oversized_bodies_are_refused(server):
    for body, status in [(b'{"model": ', 400), (b"x" * (9 << 20), 413)]:
        req = urllib.request.Request(
            f"{server.base}/v1/chat/completions",
            data=body,
            headers={"content-type": "application/json", "authorization": f"Bearer {server.api_key}"},
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req)
        assert err.value.code == status
        assert "error" in json.loads(err.value.read())


def test_concurrent_requests_each_get_their_own_answer(client):
    questions = [f"What is {a} + {b}? Answer with the number only." for a, b in [(2, 3), (10, 5), (7, 8), (20, 22)]]
    sequential = [ask(client, q, max_tokens=8).choices[0].message.content for q in questions]
    with concurrent.futures.ThreadPoolExecutor(len(questions)) as pool:
        concurrent_answers = list(pool.map(lambda q: ask(client, q, max_tokens=8).choices[0].message.content, questions))
    assert concurrent_answers == sequential
    assert [s.strip() for s in sequential] == ["5", "15", "15", "42"]


def test_the_server_answers_normally_after_all_the_bad_requests(client):
    assert "Paris" in ask(client, "What is the capital of France? Answer in one word.").choices[0].message.content


def test_status_and_metrics_show_the_model_awake_after_a_request(client, server):
    ask(client, "Say OK.", max_tokens=4)
    admin = {"authorization": f"Bearer {server.admin}"}
    with urllib.request.urlopen(urllib.request.Request(f"{server.base}/status", headers=admin)) as r:
        status = json.loads(r.read())
    model = next(m for m in status["models"] if m["name"] == DEMO_MODEL)
    assert model["state"] == "serving"
    assert model["tier"] == "device"
    assert model["device_bytes"] > 400_000_000
    assert model["last_wake"]["from_tier"] in ("ram", "disk")
    assert [t["tier"] for t in status["tiers"]] == ["device", "ram", "disk"]
    with urllib.request.urlopen(urllib.request.Request(f"{server.base}/metrics", headers=admin)) as r:
        metrics = r.read().decode()
    assert f'greenthread_model_state{{model="{DEMO_MODEL}",state="serving"}} 1' in metrics


def test_echo_returns_a_prompt_given_as_token_ids(client):
    """The ids of a prompt, as a client that tokenized it itself sends them:
    the model's own tokens of a first answer, sent back with `echo`."""
    text = "def add(a, b):\n    return"
    echoed = client.completions.create(model=DEMO_MODEL, prompt=text, max_tokens=1, temperature=0, echo=True)
    assert echoed.choices[0].text.startswith(text)
    # Qwen2's byte-level BPE: "def" is one token id, " add" another; any ids
    # of the vocabulary come back as the text they stand for.
    ids = [750, 912]
    out = client.completions.create(model=DEMO_MODEL, prompt=ids, max_tokens=4, temperature=0, echo=True)
    plain = client.completions.create(model=DEMO_MODEL, prompt=ids, max_tokens=4, temperature=0)
    prefix = out.choices[0].text[: len(out.choices[0].text) - len(plain.choices[0].text)]
    assert prefix and out.choices[0].text.endswith(plain.choices[0].text)
    assert prefix == prefix.strip("\ufffd") and len(prefix) >= 2, f"the ids' text comes first: {prefix!r}"
