"""The Responses API with the official `openai` SDK against `greenthread serve`
and the real demo model (greedy, so answers repeat): whole and streamed
answers, a function tool round trip, `previous_response_id` backed by the
database, structured output, stored responses kept per project."""
import json

import openai
import pydantic
import pytest

from conftest import DEMO_MODEL, create_key, graphql

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City name"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.base}/v1", api_key=server.api_key, max_retries=0, timeout=120)


def test_a_whole_response_is_kept_listed_and_deleted(client):
    response = client.responses.create(
        model=DEMO_MODEL,
        instructions="Answer in one short sentence.",
        input="What is the capital of France?",
        temperature=0,
        max_output_tokens=30,
    )
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status in ("completed", "incomplete")
    assert "Paris" in response.output_text
    assert response.usage.input_tokens > 10 and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.instructions == "Answer in one short sentence." and response.store is True

    kept = client.responses.retrieve(response.id)
    assert kept.output_text == response.output_text and kept.usage == response.usage
    items = list(client.responses.input_items.list(response.id))
    assert [i.type for i in items] == ["message"] and items[0].content[0].text == "What is the capital of France?"

    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_a_streamed_response_arrives_as_typed_events(client):
    stream = client.responses.create(
        model=DEMO_MODEL, input="Count from 1 to 5.", temperature=0, max_output_tokens=40, stream=True
    )
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert deltas and deltas == final.output_text
    assert "response.output_text.done" in kinds and "response.output_item.done" in kinds
    assert final.usage.output_tokens > 0
    # A streamed response is kept too, by the time its last event arrives.
    assert client.responses.retrieve(final.id).output_text == deltas


def test_a_function_tool_round_trip_with_previous_response_id(client):
    first = client.responses.create(
        model=DEMO_MODEL,
        input="What is the weather like in Paris today?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        temperature=0,
        max_output_tokens=60,
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1, first.output
    call = calls[0]
    assert call.name == "get_weather" and call.call_id.startswith("call_")
    assert json.loads(call.arguments)["city"] == "Paris"
    assert "<tool_call>" not in first.output_text

    second = client.responses.create(
        model=DEMO_MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"temperature_c": 22, "sky": "sunny"}'}],
        tools=[WEATHER],
        # The reply, not another call (the demo model, 0.5B, would call again).
        tool_choice="none",
        temperature=0,
        max_output_tokens=60,
    )
    assert second.previous_response_id == first.id
    assert [item.type for item in second.output] == ["message"] and second.output_text
    # The earlier turn, the call and its output all reached the prompt.
    alone = client.responses.create(
        model=DEMO_MODEL, input="What is the weather like in Paris today?", tools=[WEATHER], tool_choice="none",
        max_output_tokens=1,
    )
    assert second.usage.input_tokens > alone.usage.input_tokens + 15


def test_a_streamed_tool_call_sends_its_arguments(client):
    stream = client.responses.create(
        model=DEMO_MODEL,
        input="What is the weather like in Rome?",
        tools=[WEATHER],
        tool_choice="required",
        temperature=0,
        max_output_tokens=60,
        stream=True,
    )
    events = list(stream)
    arguments = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(arguments)["city"] == "Rome"
    added = [e.item for e in events if e.type == "response.output_item.added" and e.item.type == "function_call"]
    assert added and added[0].name == "get_weather"
    assert events[-1].type == "response.completed"


def test_previous_response_id_continues_the_conversation(client):
    first = client.responses.create(
        model=DEMO_MODEL, input="My name is Ada. Reply with just OK.", temperature=0, max_output_tokens=10
    )
    second = client.responses.create(
        model=DEMO_MODEL, previous_response_id=first.id, input="What is my name?", temperature=0, max_output_tokens=20
    )
    assert "Ada" in second.output_text
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    items = list(client.responses.input_items.list(second.id, order="asc"))
    assert [i.type for i in items] == ["message", "message", "message"]
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=DEMO_MODEL, previous_response_id="resp_nope", input="Hi", max_output_tokens=5)
    assert refused.value.body["param"] == "previous_response_id"


def test_structured_output_follows_the_schema(client):
    class City(pydantic.BaseModel):
        name: str
        country: str

    parsed = client.responses.parse(
        model=DEMO_MODEL, input="Name the capital of Italy.", text_format=City, temperature=0, max_output_tokens=60
    )
    assert isinstance(parsed.output_parsed, City)
    assert parsed.output_parsed.name == "Rome"


def test_a_cut_answer_is_incomplete_and_store_false_keeps_nothing(client):
    cut = client.responses.create(
        model=DEMO_MODEL, input="Write a long story about a dragon.", max_output_tokens=5, store=False
    )
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"
    assert cut.usage.output_tokens == 5 and cut.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(cut.id)


def test_what_cannot_be_served_is_refused_by_name(client):
    with pytest.raises(openai.BadRequestError) as hosted:
        client.responses.create(model=DEMO_MODEL, input="Search the web.", tools=[{"type": "web_search"}])
    assert "web_search" in hosted.value.message
    with pytest.raises(openai.BadRequestError) as image:
        client.responses.create(
            model=DEMO_MODEL,
            input=[{"role": "user", "content": [{"type": "input_image", "image_url": "https://example.com/a.png"}]}],
        )
    assert "input[0].content[0]" in image.value.message


def test_another_projects_key_cannot_see_or_continue_a_response(server, client):
    graphql(
        server.base,
        server.admin,
        "mutation($i: CreateProjectInput!) { createProject(input: $i) { userErrors { message } } }",
        {"i": {"name": "responses-other"}},
    )
    other = create_key(server.base, server.admin, "responses-other", ["inference"], name="other")
    stranger = openai.OpenAI(base_url=f"{server.base}/v1", api_key=other["secret"], max_retries=0, timeout=60)
    mine = client.responses.create(model=DEMO_MODEL, input="Say hi.", temperature=0, max_output_tokens=5)
    with pytest.raises(openai.NotFoundError):
        stranger.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        stranger.responses.delete(mine.id)
    assert client.responses.retrieve(mine.id).id == mine.id
