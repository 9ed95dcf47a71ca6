"""Token log-probabilities (chat and completions, whole and streamed) and
fill-in-the-middle completions (`suffix`) with the official `openai` SDK
against `greenthread serve` and the real demo model (a code model with FIM
tokens)."""
import math

import openai
import pytest

from conftest import DEMO_MODEL


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.base}/v1", api_key=server.api_key, max_retries=0, timeout=120)


def test_chat_logprobs_cover_every_token_of_the_answer(client):
    reply = client.chat.completions.create(
        model=DEMO_MODEL, messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0, max_tokens=12, logprobs=True, top_logprobs=3,
    )
    choice = reply.choices[0]
    tokens = choice.logprobs.content
    assert "".join(t.token for t in tokens) == choice.message.content
    # Every token but the end-of-turn token that stopped the answer.
    assert len(tokens) == reply.usage.completion_tokens - (choice.finish_reason == "stop")
    for t in tokens:
        assert t.logprob <= 0 and bytes(t.bytes).decode(errors="replace") == t.token
        assert len(t.top_logprobs) == 3
        assert [a.logprob for a in t.top_logprobs] == sorted((a.logprob for a in t.top_logprobs), reverse=True)
        assert sum(math.exp(a.logprob) for a in t.top_logprobs) <= 1.0 + 1e-4
        # Greedy: the chosen token is the most likely one.
        assert t.top_logprobs[0].token == t.token and t.top_logprobs[0].logprob == pytest.approx(t.logprob)


def test_streamed_chat_logprobs_arrive_with_their_text(client):
    stream = client.chat.completions.create(
        model=DEMO_MODEL, messages=[{"role": "user", "content": "Count to three."}],
        temperature=0, max_tokens=10, logprobs=True, stream=True,
    )
    text, tokens = "", []
    for chunk in stream:
        if not chunk.choices:
            continue
        text += chunk.choices[0].delta.content or ""
        if chunk.choices[0].logprobs:
            tokens += chunk.choices[0].logprobs.content
    assert tokens and "".join(t.token for t in tokens) == text


def test_completion_logprobs_in_the_legacy_columns(client):
    reply = client.completions.create(
        model=DEMO_MODEL, prompt="The capital of France is", temperature=0, max_tokens=4, logprobs=2
    )
    choice = reply.choices[0]
    lp = choice.logprobs
    assert "".join(lp.tokens) == choice.text
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))]
    assert all(len(alts) == 2 for alts in lp.top_logprobs)
    assert lp.tokens[0] == " Paris" and lp.token_logprobs[0] > math.log(0.5)
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=DEMO_MODEL, prompt="x", max_tokens=1, logprobs=1, echo=True)
    assert refused.value.body["param"] == "echo"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=DEMO_MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=1, logprobs=True, top_logprobs=21
        )


def test_suffix_fills_in_the_middle(client):
    reply = client.completions.create(
        model=DEMO_MODEL,
        prompt="def add(a, b):\n    ",
        suffix="\n\nprint(add(2, 3))\n",
        temperature=0,
        max_tokens=6,
    )
    assert reply.choices[0].text.startswith("return a + b"), reply.choices[0].text
    # Without the suffix the model sees only the prefix: the prompt is shorter.
    plain = client.completions.create(model=DEMO_MODEL, prompt="def add(a, b):\n    ", temperature=0, max_tokens=1)
    assert reply.usage.prompt_tokens > plain.usage.prompt_tokens + 5
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=DEMO_MODEL, prompt=[1, 2, 3], suffix="x", max_tokens=1)
    assert refused.value.body["param"] == "suffix"
