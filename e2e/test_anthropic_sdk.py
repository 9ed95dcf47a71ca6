"""The official `anthropic` SDK against the real binary serving the real demo model."""
import anthropic
import pytest

from conftest import DEMO_ALIAS, DEMO_MODEL


@pytest.fixture(scope="module")
def client(server):
    # The SDK sends the key as `x-api-key`; GreenThread accepts it like a bearer token.
    return anthropic.Anthropic(base_url=server.base, api_key=server.api_key, max_retries=0, timeout=120)


def test_a_message_gets_a_sensible_answer_with_real_usage(client):
    message = client.messages.create(
        model=DEMO_MODEL,
        max_tokens=16,
        extra_body={"temperature": 0},  # greedy; this SDK version no longer exposes temperature
        system="Answer with one word.",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert "Paris" in message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 10 and 0 < message.usage.output_tokens <= 16
    counted = client.messages.count_tokens(
        model=DEMO_ALIAS,
        system="Answer with one word.",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert counted.input_tokens == message.usage.input_tokens


def test_a_streamed_message_arrives_in_pieces_and_adds_up(client):
    pieces = []
    with client.messages.stream(
        model=DEMO_MODEL,
        max_tokens=24,
        extra_body={"temperature": 0},  # greedy; this SDK version no longer exposes temperature
        messages=[{"role": "user", "content": "Count from one to five in words."}],
    ) as stream:
        for text in stream.text_stream:
            pieces.append(text)
        final = stream.get_final_message()
    assert len(pieces) > 3, pieces
    assert "".join(pieces) == final.content[0].text
    assert final.usage.output_tokens > 3 and final.usage.input_tokens > 5
    assert final.stop_reason in ("end_turn", "max_tokens")


def test_a_stop_sequence_ends_the_message(client):
    message = client.messages.create(
        model=DEMO_MODEL,
        max_tokens=40,
        extra_body={"temperature": 0},  # greedy; this SDK version no longer exposes temperature
        stop_sequences=["three", "Three"],
        messages=[{"role": "user", "content": "Count from one to five in words, separated by commas."}],
    )
    assert message.stop_reason == "stop_sequence" and message.stop_sequence in ("three", "Three"), message
    assert "hree" not in message.content[0].text and "two" in message.content[0].text.lower()


def test_bad_requests_and_unknown_models_are_sdk_errors(client):
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model=DEMO_MODEL, max_tokens=5, messages=[{"role": "system", "content": "hi"}])
    assert err.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.NotFoundError) as err:
        client.messages.create(model="claude-does-not-exist", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["error"]["type"] == "not_found_error"


def test_a_wrong_key_is_an_authentication_error(server):
    bad = anthropic.Anthropic(base_url=server.base, api_key="gt_wrong.key.here", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model=DEMO_MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
