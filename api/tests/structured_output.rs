//! Structured output and tool calls over real HTTP on loopback. The tiny
//! models have random weights, so whatever they write is only valid because
//! the grammar allowed nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use greenthread_node_runtime::fixtures::TinyModel;
use greenthread_node_runtime::fixtures::vocab::HERMES_TOOLS_TEMPLATE;
use serde_json::{Value, json};
use support::{Served, TestServer};

async fn server() -> TestServer {
    let mut tools = TinyModel::qwen2();
    tools.chat_template = Some(HERMES_TOOLS_TEMPLATE.to_owned());
    // Tool definitions take many tokens in the tiny byte-level vocabulary.
    tools.context_length = 2048;
    TestServer::start(vec![Served::new("tiny-qwen", TinyModel::qwen2()), Served::new("tiny-tools", tools)]).await
}

/// A schema whose every value is short: strings, numbers and lists are bounded,
/// so a random model finishes well inside `max_tokens`.
fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 6},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "role": {"enum": ["admin", "user"]},
            "tags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3},
            "manager": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 4}]}
        },
        "required": ["name", "age", "role", "tags", "manager"],
        "additionalProperties": false
    })
}

fn json_schema_request(model: &str, seed: u64) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "Describe a user."}],
        "max_tokens": 400,
        "temperature": 1.0,
        "seed": seed,
        "response_format": {"type": "json_schema", "json_schema": {"name": "person", "strict": true, "schema": person_schema()}},
    })
}

fn assert_person(content: &str) {
    let v: Value = serde_json::from_str(content).unwrap_or_else(|e| panic!("{content:?} is not JSON: {e}"));
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 5, "{v}");
    assert!(v["name"].as_str().unwrap().chars().count() <= 6, "{v}");
    assert!(v["age"].as_u64().is_some_and(|age| age <= 150), "{v}");
    assert!(["admin", "user"].contains(&v["role"].as_str().unwrap()), "{v}");
    let tags = v["tags"].as_array().unwrap();
    assert!(tags.len() <= 3 && tags.iter().all(Value::is_boolean), "{v}");
    assert!(v["manager"].is_null() || v["manager"].as_str().unwrap().chars().count() <= 4, "{v}");
}

#[tokio::test]
async fn json_schema_output_matches_the_schema_even_from_random_weights() {
    let s = server().await;
    for seed in 0..4 {
        let (status, body) = s.post("/v1/chat/completions", json_schema_request("tiny-qwen", seed)).await;
        assert_eq!(status, 200, "{body}");
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "stop", "{body}");
        assert_person(choice["message"]["content"].as_str().unwrap());
    }
}

#[tokio::test]
async fn a_streamed_json_answer_is_the_same_as_the_whole_one() {
    let s = server().await;
    let (_, whole) = s.post("/v1/chat/completions", json_schema_request("tiny-qwen", 9)).await;
    let mut body = json_schema_request("tiny-qwen", 9);
    body["stream"] = json!(true);
    let chunks = s.stream("/v1/chat/completions", body).await;
    let text: String = chunks[..chunks.len() - 1]
        .iter()
        .map(|c| serde_json::from_str::<Value>(c).unwrap())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, whole["choices"][0]["message"]["content"].as_str().unwrap());
    assert_person(&text);
}

#[tokio::test]
async fn json_object_output_is_an_object() {
    let s = server().await;
    // Any object is allowed, so a random model may not finish one: the
    // answer is then a cut-off prefix and says so with `length`.
    for seed in 0..4 {
        let body = json!({"model": "tiny-qwen", "messages": [{"role": "user", "content": "JSON please"}],
                          "max_tokens": 300, "temperature": 1.0, "seed": seed, "response_format": {"type": "json_object"}});
        let (status, answer) = s.post("/v1/chat/completions", body).await;
        assert_eq!(status, 200, "{answer}");
        let content = answer["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(content.starts_with('{'), "{content:?}");
        if answer["choices"][0]["finish_reason"] == "stop" {
            assert!(serde_json::from_str::<Value>(content).unwrap().is_object());
        } else {
            assert_eq!(answer["choices"][0]["finish_reason"], "length");
        }
    }
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}}, "required": ["city"]}
    }}, {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}, "additionalProperties": false}}}])
}

fn tool_request(choice: Value) -> Value {
    json!({"model": "tiny-tools", "messages": [{"role": "user", "content": "Weather in Paris?"}],
           "tools": weather_tools(), "tool_choice": choice, "max_tokens": 300, "temperature": 0})
}

#[tokio::test]
async fn a_forced_tool_call_comes_back_as_tool_calls() {
    let s = server().await;
    let named = json!({"type": "function", "function": {"name": "get_weather"}});
    let (status, body) = s.post("/v1/chat/completions", tool_request(named.clone())).await;
    assert_eq!(status, 200, "{body}");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{body}");
    assert!(choice["message"]["content"].is_null(), "{body}");
    let call = &choice["message"]["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!((call["type"].as_str(), call["function"]["name"].as_str()), (Some("function"), Some("get_weather")));
    let arguments: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(arguments["city"].as_str().unwrap().chars().count() <= 12, "{arguments}");

    // "required" lets the model pick among the tools; it still calls one.
    let (_, body) = s.post("/v1/chat/completions", tool_request(json!("required"))).await;
    let name = body["choices"][0]["message"]["tool_calls"][0]["function"]["name"].as_str().unwrap().to_owned();
    assert!(["get_weather", "get_time"].contains(&name.as_str()), "{body}");

    // Streamed: the call's id and name first, then its arguments, each with the call's index.
    let mut streamed = tool_request(named);
    streamed["stream"] = json!(true);
    let chunks = s.stream("/v1/chat/completions", streamed).await;
    let chunks: Vec<Value> = chunks[..chunks.len() - 1].iter().map(|c| serde_json::from_str(c).unwrap()).collect();
    let deltas: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0)).collect();
    assert_eq!(deltas.len(), 2, "{chunks:?}");
    assert!(deltas.iter().all(|d| d["index"] == 0));
    assert_eq!(deltas[0]["function"]["name"], "get_weather");
    assert!(deltas[0]["id"].as_str().unwrap().starts_with("call_"));
    let streamed_args: Value = serde_json::from_str(deltas[1]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(streamed_args, arguments, "greedy: the stream calls with the same arguments");
    let finish = chunks.iter().find_map(|c| c["choices"][0]["finish_reason"].as_str()).unwrap();
    assert_eq!(finish, "tool_calls");
}

#[tokio::test]
async fn a_tool_result_goes_back_to_the_model() {
    let s = server().await;
    let (_, first) = s.post("/v1/chat/completions", tool_request(json!("required"))).await;
    let call = first["choices"][0]["message"]["tool_calls"][0].clone();
    let with_result = |result: &str| {
        let mut body = tool_request(json!("auto"));
        body["messages"] = json!([
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": result},
        ]);
        body["max_tokens"] = json!(8);
        body
    };
    let (status, short) = s.post("/v1/chat/completions", with_result("sunny")).await;
    assert_eq!(status, 200, "{short}");
    let (_, long) = s.post("/v1/chat/completions", with_result("sunny with a light breeze from the west")).await;
    let prompt = |b: &Value| b["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt(&short) > prompt(&first), "the call and its result are in the prompt");
    assert!(prompt(&long) > prompt(&short), "the tool's result is rendered into the prompt");
}

#[tokio::test]
async fn what_cannot_be_served_is_refused_by_field() {
    let s = server().await;
    // A template without tools: the model has never been taught to call any.
    let mut body = tool_request(json!("auto"));
    body["model"] = json!("tiny-qwen");
    let (status, err) = s.post("/v1/chat/completions", body).await;
    assert_eq!((status, err["error"]["param"].as_str()), (400, Some("tools")), "{err}");
    // A schema keyword the grammar cannot enforce.
    let mut body = json_schema_request("tiny-qwen", 0);
    body["response_format"]["json_schema"]["schema"]["properties"]["tags"]["uniqueItems"] = json!(true);
    let (status, err) = s.post("/v1/chat/completions", body).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["param"], "response_format.json_schema.schema");
    assert!(err["error"]["message"].as_str().unwrap().contains("uniqueItems"), "{err}");
    // A tool_choice naming a tool not offered.
    let (status, err) =
        s.post("/v1/chat/completions", tool_request(json!({"type": "function", "function": {"name": "nope"}}))).await;
    assert_eq!((status, err["error"]["param"].as_str()), (400, Some("tool_choice")), "{err}");
    // And the server still answers.
    let (status, _) = s.post("/v1/chat/completions", json_schema_request("tiny-qwen", 1)).await;
    assert_eq!(status, 200);
}

fn anthropic_tools() -> Value {
    json!([{"name": "get_weather", "description": "The weather in a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}}, "required": ["city"]}}])
}

#[tokio::test]
async fn anthropic_tools_become_tool_use_blocks_and_results_go_back() {
    let s = server().await;
    let body = json!({"model": "tiny-tools", "max_tokens": 300, "temperature": 0, "tools": anthropic_tools(),
                      "tool_choice": {"type": "any"}, "messages": [{"role": "user", "content": "Weather in Paris?"}]});
    let (status, m) = s.post("/v1/messages", body.clone()).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["stop_reason"], "tool_use", "{m}");
    let block = m["content"].as_array().unwrap().iter().find(|b| b["type"] == "tool_use").unwrap().clone();
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"), "{block}");
    assert_eq!(block["name"], "get_weather");
    assert!(block["input"]["city"].is_string(), "{block}");

    // Streamed: a tool_use block whose input arrives as input_json_delta.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let resp = s.client.post(s.url("/v1/messages")).json(&streamed).send().await.unwrap();
    let text = resp.text().await.unwrap();
    let data: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let start = data.iter().find(|e| e["type"] == "content_block_start" && e["content_block"]["type"] == "tool_use");
    assert_eq!(start.unwrap()["content_block"]["name"], "get_weather", "{text}");
    let partial: String = data
        .iter()
        .filter(|e| e["delta"]["type"] == "input_json_delta")
        .map(|e| e["delta"]["partial_json"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&partial).unwrap(), block["input"], "{text}");
    let delta = data.iter().find(|e| e["type"] == "message_delta").unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");

    // The call and its result, as Anthropic clients send them back.
    let mut follow_up = body;
    follow_up["tool_choice"] = json!({"type": "auto"});
    follow_up["max_tokens"] = json!(8);
    follow_up["messages"] = json!([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [block]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"], "content": [{"type": "text", "text": "sunny"}]}]},
    ]);
    let (status, answer) = s.post("/v1/messages", follow_up.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["usage"]["input_tokens"].as_u64() > m["usage"]["input_tokens"].as_u64());
    // A tool_result in an assistant turn is refused by its field.
    follow_up["messages"][1]["content"] = json!([{"type": "tool_result", "tool_use_id": "x", "content": "y"}]);
    let (status, err) = s.post("/v1/messages", follow_up).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["type"], "error");
    assert!(err["error"]["message"].as_str().unwrap().contains("messages.1.content.0.type"), "{err}");
}
