"""Probes a hostile client sent to the release binary, kept as tests: each
once killed the server, stalled a model for everyone, or was answered with
something other than a clear refusal. Against `greenthread serve` with the
real demo model."""
import json
import threading
import time
import urllib.error
import urllib.request

from conftest import DEMO_MODEL


def post(base: str, path: str, body, key: str | None = None) -> tuple[int, dict, float]:
    """Status, JSON answer and seconds taken."""
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    started = time.monotonic()
    request = urllib.request.Request(f"{base}{path}", data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=300) as r:
            return r.status, json.loads(r.read()), time.monotonic() - started
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), time.monotonic() - started


def test_deeply_nested_graphql_without_a_key_is_refused_and_the_server_lives(server):
    deep = 2000
    for document in [
        "{model(name:" + "[" * deep + '"x"' + "]" * deep + "){name}}",
        "{model(name:" + "{a:" * deep + '"x"' + "}" * deep + "){name}}",
        "query($v:String=" + "[" * deep + '"x"' + "]" * deep + "){model(name:$v){name}}",
    ]:
        status, answer, _ = post(server.base, "/graphql", {"query": document})
        assert status == 400, answer
        assert answer["errors"][0]["extensions"]["code"] == "BAD_REQUEST", answer
    with urllib.request.urlopen(f"{server.base}/health", timeout=10) as r:
        assert r.status == 200
    assert server.proc.poll() is None, "the server is still running"


def nested_schema(depth: int) -> dict:
    schema = {"type": "string"}
    for _ in range(depth):
        schema = {"anyOf": [{"type": "object", "properties": {"k0": schema, "k1": schema}}, {"type": "array", "items": schema}]}
    return schema


def chat(prompt: str, max_tokens: int, **extra) -> dict:
    return {"model": DEMO_MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, **extra}


def test_a_costly_grammar_does_not_hold_another_requests_tokens(server):
    normal = chat("Say hi", 8)
    post(server.base, "/v1/chat/completions", normal, server.api_key)
    _, _, baseline = post(server.base, "/v1/chat/completions", normal, server.api_key)
    heavy = chat("JSON please", 48, response_format={
        "type": "json_schema", "json_schema": {"name": "deep", "schema": nested_schema(6)}})
    result = {}
    worker = threading.Thread(target=lambda: result.update(heavy=post(server.base, "/v1/chat/completions", heavy, server.api_key)))
    worker.start()
    time.sleep(0.3)
    status, answer, during = post(server.base, "/v1/chat/completions", normal, server.api_key)
    worker.join()
    assert status == 200, answer
    heavy_status, heavy_answer, heavy_took = result["heavy"]
    assert heavy_status == 200, heavy_answer
    # Measured: 0.45 s alone, 0.57 s beside the constrained request (which took 1.5 s).
    assert during < 2 * baseline + 1.0, f"a plain request took {during:.2f} s beside a constrained one, {baseline:.2f} s alone"


def test_schemas_past_the_bounds_are_refused_at_once(server):
    deep_tool = {"type": "string"}
    for _ in range(60):
        deep_tool = {"type": "object", "properties": {"a": deep_tool}, "required": ["a"]}
    body = chat("call it", 8, tools=[{"type": "function", "function": {"name": "f", "parameters": deep_tool}}],
                tool_choice="required")
    status, answer, took = post(server.base, "/v1/chat/completions", body, server.api_key)
    assert (status, answer["error"]["param"]) == (400, "tools"), answer
    assert took < 2, took
    wide = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(10_000)}}
    body = chat("JSON please", 8, response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": wide}})
    status, answer, took = post(server.base, "/v1/chat/completions", body, server.api_key)
    assert (status, answer["error"]["param"]) == (400, "response_format.json_schema.schema"), answer
    assert took < 2, took
    for impossible in [{"$ref": "#"}, {"type": "array", "minItems": 5, "maxItems": 2}]:
        body = chat("JSON please", 8, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": impossible}})
        status, answer, _ = post(server.base, "/v1/chat/completions", body, server.api_key)
        assert status == 400, answer


def test_status_and_metrics_are_not_open_to_anyone(server):
    for path in ["/status", "/metrics"]:
        try:
            urllib.request.urlopen(f"{server.base}{path}", timeout=10)
            raise AssertionError(f"{path} answered without a key")
        except urllib.error.HTTPError as e:
            assert e.code == 401, path
