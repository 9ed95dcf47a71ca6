"""Tools and structured output with the official `openai` and `anthropic` SDKs
against `greenthread serve` with the real demo model (greedy, so answers repeat)."""
import datetime
import json
import re

import anthropic
import openai
import pydantic
import pytest

from conftest import DEMO_MODEL

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}
QUESTION = [{"role": "user", "content": "What is the weather like in Paris today?"}]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.base}/v1", api_key=server.api_key, max_retries=0, timeout=120)


def test_a_tool_round_trip(client):
    first = client.chat.completions.create(
        model=DEMO_MODEL, messages=QUESTION, tools=[WEATHER], temperature=0, max_tokens=100
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"] == "Paris"

    followup = QUESTION + [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature_c": 22, "sky": "sunny"})},
    ]
    second = client.chat.completions.create(
        model=DEMO_MODEL, messages=followup, tools=[WEATHER], temperature=0, max_tokens=60
    )
    assert second.choices[0].message.role == "assistant"
    # The call and the tool's answer reached the model's prompt.
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + 15


def test_a_forced_tool_call_streams_with_its_index(client):
    stream = client.chat.completions.create(
        model=DEMO_MODEL,
        messages=QUESTION,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
        max_tokens=100,
        stream=True,
    )
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
            call["id"] = delta.id or call["id"]
            call["name"] += delta.function.name or ""
            call["arguments"] += delta.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["id"].startswith("call_") and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"])["city"] == "Paris"


class Person(pydantic.BaseModel):
    name: str
    age: int


def test_json_schema_from_a_pydantic_model(client):
    parsed = client.chat.completions.parse(
        model=DEMO_MODEL,
        messages=[{"role": "user", "content": "Describe a person named Ada who is 36."}],
        response_format=Person,
        temperature=0,
        max_tokens=80,
    )
    person = parsed.choices[0].message.parsed
    assert person == Person(name="Ada", age=36)


def test_json_object_is_a_json_object(client):
    reply = client.chat.completions.create(
        model=DEMO_MODEL,
        messages=[{"role": "user", "content": "List three colors as JSON."}],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=80,
    )
    assert reply.choices[0].finish_reason == "stop"
    answer = json.loads(reply.choices[0].message.content)
    # Laid out as the model likes (a line break after `{`), not squeezed into `{}`.
    assert isinstance(answer, dict) and answer, reply.choices[0].message.content


def test_an_unenforceable_schema_is_a_clear_400(client):
    schema = {"type": "object", "properties": {"n": {"type": "array", "uniqueItems": True}}}
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=DEMO_MODEL,
            messages=QUESTION,
            response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
            max_tokens=10,
        )
    assert e.value.body["param"] == "response_format.json_schema.schema"
    assert "uniqueItems" in e.value.body["message"]


def test_anthropic_tool_use(server):
    client = anthropic.Anthropic(base_url=server.base, api_key=server.api_key, max_retries=0, timeout=120)
    tools = [{"name": "get_weather", "description": "Get the current weather in a city",
              "input_schema": WEATHER["function"]["parameters"]}]
    message = client.messages.create(
        model=DEMO_MODEL,
        max_tokens=100,
        messages=QUESTION,
        tools=tools,
        tool_choice={"type": "tool", "name": "get_weather"},
        extra_body={"temperature": 0},
    )
    assert message.stop_reason == "tool_use"
    use = next(b for b in message.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input["city"] == "Paris"
    answer = client.messages.create(
        model=DEMO_MODEL,
        max_tokens=60,
        tools=tools,
        messages=QUESTION + [
            {"role": "assistant", "content": [use.model_dump()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 22 °C"}]},
        ],
        extra_body={"temperature": 0},
    )
    assert answer.role == "assistant"
    assert answer.usage.input_tokens > message.usage.input_tokens


FILM = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
        "released": {"type": "string", "format": "date"},
    },
    "required": ["code", "rating", "released"],
}


def test_a_schema_with_a_pattern_numeric_bounds_and_a_format_is_kept(client):
    reply = client.chat.completions.create(
        model=DEMO_MODEL,
        messages=[{"role": "user", "content": "Describe a film as JSON: a product code, a rating and its release date."}],
        response_format={"type": "json_schema", "json_schema": {"name": "film", "schema": FILM}},
        temperature=0,
        max_tokens=80,
    )
    assert reply.choices[0].finish_reason == "stop", reply
    film = json.loads(reply.choices[0].message.content)
    assert re.fullmatch(r"[A-Z]{3}-[0-9]{2}", film["code"]), film
    assert 1 <= film["rating"] <= 5, film
    datetime.date.fromisoformat(film["released"])
    assert set(film) == {"code", "rating", "released"}, film


def test_a_regex_and_a_choice_the_way_vllm_clients_ask(client):
    reply = client.chat.completions.create(
        model=DEMO_MODEL,
        messages=[{"role": "user", "content": "Give me a phone number."}],
        temperature=0,
        max_tokens=20,
        extra_body={"structured_outputs": {"regex": r"\+1 [0-9]{3}-[0-9]{3}-[0-9]{4}"}},
    )
    assert re.fullmatch(r"\+1 [0-9]{3}-[0-9]{3}-[0-9]{4}", reply.choices[0].message.content), reply
    reply = client.completions.create(
        model=DEMO_MODEL,
        prompt="Is Paris the capital of France? Answer:",
        temperature=0,
        max_tokens=5,
        extra_body={"guided_choice": [" yes", " no"]},
    )
    assert reply.choices[0].text == " yes", reply


def test_a_lark_grammar(client):
    grammar = 'start: "The answer is " NUMBER "."\nNUMBER: /[0-9]+/'
    reply = client.chat.completions.create(
        model=DEMO_MODEL,
        messages=[{"role": "user", "content": "What is 6 times 7?"}],
        temperature=0,
        max_tokens=20,
        extra_body={"structured_outputs": {"grammar": grammar}},
    )
    assert reply.choices[0].message.content == "The answer is 42.", reply


def test_auto_tool_calls_come_back_as_calls_whatever_form_the_model_writes(client):
    """With `tool_choice: auto` the demo model writes its call tagged, bare or
    in a ```json fence, depending on the sampling: over several seeds, every
    answer that holds a call of the offered tool comes back as `tool_calls`,
    and none leaves the call's JSON in the text."""
    called = 0
    for seed in range(6):
        answer = client.chat.completions.create(
            model=DEMO_MODEL, messages=QUESTION, tools=[WEATHER], tool_choice="auto",
            temperature=0.7, seed=seed, max_tokens=120,
        )
        message = answer.choices[0].message
        if message.tool_calls:
            called += 1
            assert answer.choices[0].finish_reason == "tool_calls"
            assert message.tool_calls[0].function.name == "get_weather"
            assert "Paris" in json.loads(message.tool_calls[0].function.arguments)["city"]
        # A call left in the text would carry its arguments.
        assert '"arguments"' not in (message.content or ""), message.content
    assert called >= 3, f"only {called} of 6 answers called the tool"


def test_a_forced_call_cut_by_max_tokens_leaks_no_markup(client):
    answer = client.chat.completions.create(
        model=DEMO_MODEL, messages=QUESTION, tools=[WEATHER], tool_choice="required", temperature=0, max_tokens=6,
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "length"
    assert not choice.message.tool_calls
    assert "<tool_call>" not in (choice.message.content or "") and "get_weather" not in (choice.message.content or "")


def test_required_calls_honour_parallel_tool_calls(client):
    """The grammar for `required` allows one or more calls unless
    `parallel_tool_calls` is false (both checked against the grammar in
    node-runtime's constraint tests); the demo model, greedy, makes one
    either way, and each is a whole call of the offered tool."""
    two_cities = [{"role": "user", "content": "What is the weather in Paris and in London right now?"}]
    kwargs = dict(model=DEMO_MODEL, messages=two_cities, tools=[WEATHER], tool_choice="required", temperature=0, max_tokens=160)
    for parallel in (True, False):
        answer = client.chat.completions.create(**kwargs, parallel_tool_calls=parallel)
        calls = answer.choices[0].message.tool_calls
        assert answer.choices[0].finish_reason == "tool_calls" and calls
        assert all(c.function.name == "get_weather" and json.loads(c.function.arguments)["city"] for c in calls)
        if not parallel:
            assert len(calls) == 1
