"""The client libraries people build on, run against `greenthread serve` and the
real demo model as their users run them: the OpenAI Agents SDK (Responses by
default), langchain-openai, pydantic-ai, litellm (OpenAI and Anthropic routes),
instructor (its own environment: its pins clash with the openai SDK's) and
the Vercel AI SDK on Node."""
import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import DEMO_MODEL

CLIENTS = Path(__file__).parent / "clients"
QUESTION = "What is the weather like in Paris today?"


def weather_report(city: str) -> str:
    return json.dumps({"city": city, "temperature_c": 22, "sky": "sunny"})


def test_openai_agents_with_its_default_responses_model_and_a_tool(server):
    import agents
    import openai

    agents.set_tracing_disabled(True)
    agents.set_default_openai_client(
        openai.AsyncOpenAI(base_url=f"{server.base}/v1", api_key=server.api_key, max_retries=0, timeout=120),
        use_for_tracing=False,
    )
    calls: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        calls.append(city)
        return weather_report(city)

    settings = agents.ModelSettings(temperature=0, max_tokens=120)
    # The demo model (0.5B) calls the tool again after its answer instead of
    # replying, so the tool's answer is the agent's: a setting the SDK offers.
    agent = agents.Agent(
        name="Weather",
        instructions="You are a helpful assistant.",
        model=DEMO_MODEL,
        tools=[get_weather],
        model_settings=settings,
        tool_use_behavior="stop_on_first_tool",
    )
    result = agents.Runner.run_sync(agent, QUESTION, max_turns=3)
    assert calls == ["Paris"], calls
    assert json.loads(result.final_output)["city"] == "Paris"
    plain = agents.Agent(name="Geography", instructions="Answer in one short sentence.", model=DEMO_MODEL,
                         model_settings=settings)
    answer = agents.Runner.run_sync(plain, "What is the capital of France?", max_turns=1)
    assert "Paris" in answer.final_output
    # Every model call went through the Responses API (the SDK's default).
    responses = result.raw_responses + answer.raw_responses
    assert responses and all(r.response_id and r.response_id.startswith("resp_") for r in responses)


def test_langchain_bind_tools_with_an_auto_tool(server):
    from langchain_core.messages import ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return weather_report(city)

    llm = ChatOpenAI(
        model=DEMO_MODEL, base_url=f"{server.base}/v1", api_key=server.api_key, temperature=0, max_tokens=80,
        max_retries=0,
    )
    bound = llm.bind_tools([get_weather])
    first = bound.invoke(QUESTION)
    assert [c["name"] for c in first.tool_calls] == ["get_weather"], first
    assert first.tool_calls[0]["args"]["city"] == "Paris"
    call = first.tool_calls[0]
    # The call and the tool's answer go back as the library writes them; the
    # demo model (0.5B) may call again rather than reply, so either is an answer.
    history = [("user", QUESTION), first, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])]
    reply = bound.invoke(history)
    assert reply.content or reply.tool_calls
    assert reply.usage_metadata["input_tokens"] > first.usage_metadata["input_tokens"] + 15


def test_pydantic_ai_with_a_tool(server):
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel(DEMO_MODEL, provider=OpenAIProvider(base_url=f"{server.base}/v1", api_key=server.api_key))
    agent = Agent(model, instructions="Answer questions about the weather using the tool.")
    calls: list[str] = []

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        calls.append(city)
        return weather_report(city)

    async def until_the_tool_ran() -> None:
        # The demo model (0.5B) calls the tool again rather than reply, so the
        # run is followed step by step until its first tool call has run.
        async with agent.iter(QUESTION, model_settings={"temperature": 0, "max_tokens": 80}) as run:
            async for _node in run:
                if calls:
                    break

    asyncio.run(until_the_tool_ran())
    # The model may write the same call more than once in its answer; each is run.
    assert calls and set(calls) == {"Paris"}, calls

    plain = Agent(model, instructions="Answer in one short sentence.")
    answer = plain.run_sync("What is the capital of France?", model_settings={"temperature": 0, "max_tokens": 30})
    assert "Paris" in answer.output


def test_litellm_through_both_routes(server):
    import litellm

    question = [{"role": "user", "content": "What is the capital of France? One word."}]
    openai_route = litellm.completion(
        model=f"openai/{DEMO_MODEL}", api_base=f"{server.base}/v1", api_key=server.api_key,
        messages=question, temperature=0, max_tokens=8,
    )
    assert "Paris" in openai_route.choices[0].message.content
    assert openai_route.usage.completion_tokens > 0
    anthropic_route = litellm.completion(
        model=f"anthropic/{DEMO_MODEL}", api_base=server.base, api_key=server.api_key,
        messages=question, temperature=0, max_tokens=8,
    )
    assert "Paris" in anthropic_route.choices[0].message.content
    assert anthropic_route.usage.completion_tokens > 0
    streamed = litellm.completion(
        model=f"openai/{DEMO_MODEL}", api_base=f"{server.base}/v1", api_key=server.api_key,
        messages=question, temperature=0, max_tokens=8, stream=True,
    )
    assert "Paris" in "".join(chunk.choices[0].delta.content or "" for chunk in streamed)


def run_client(argv: list[str], what: str) -> dict:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{what} failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_instructor_extracts_a_pydantic_model(server):
    python = os.environ.get("GREENTHREAD_INSTRUCTOR_PYTHON")
    if not python:
        pytest.fail("GREENTHREAD_INSTRUCTOR_PYTHON must be set: run the e2e tests through scripts/test.sh")
    person = run_client(
        [python, str(CLIENTS / "instructor_extract.py"), f"{server.base}/v1", server.api_key, DEMO_MODEL], "instructor"
    )
    assert person == {"name": "Ada Lovelace", "age": 36}


def test_the_vercel_ai_sdk_with_its_default_openai_provider(server):
    sdk = CLIENTS / "ai-sdk"
    if not (sdk / "node_modules" / "ai").is_dir():
        pytest.fail("the AI SDK is not installed: run the e2e tests through scripts/test.sh")
    out = run_client(["node", str(sdk / "check.mjs"), f"{server.base}/v1", server.api_key, DEMO_MODEL], "the AI SDK")
    assert out["tool"]["calls"] == ["Paris"], out
    assert out["tool"]["steps"] == 2 and out["tool"]["text"], out
    assert out["stream"]["text"] and out["stream"]["usage"]["outputTokens"] > 0, out
    assert isinstance(out["object"]["population_millions"], int) and "Paris" in out["object"]["name"], out
