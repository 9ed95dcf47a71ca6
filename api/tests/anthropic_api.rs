//! The Anthropic Messages API over real HTTP on loopback, with tiny
//! generated models behind it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use greenthread_node_runtime::fixtures::TinyModel;
use serde_json::{Value, json};
use support::{Served, TestServer};

async fn server() -> TestServer {
    TestServer::start(vec![Served::new("tiny-qwen", TinyModel::qwen2()).alias("Org/Tiny-Qwen")]).await
}

fn message(max_tokens: u32) -> Value {
    json!({"model": "tiny-qwen", "max_tokens": max_tokens, "temperature": 0,
           "messages": [{"role": "user", "content": "Hello"}]})
}

/// The `event:` names and JSON data of an SSE answer.
async fn events(s: &TestServer, body: Value) -> Vec<(String, Value)> {
    let resp = s.client.post(s.url("/v1/messages")).json(&body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    text.split("\n\n")
        // Comment-only events (the `: usage` line for a gateway's meter) are not events to a client.
        .filter(|e| e.lines().any(|l| !l.is_empty() && !l.starts_with(':')))
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).unwrap().to_owned();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            (name, serde_json::from_str(data).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn a_message_is_answered_with_real_usage() {
    let s = server().await;
    let (status, m) = s.post("/v1/messages", message(24)).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!((m["type"].as_str(), m["role"].as_str()), (Some("message"), Some("assistant")));
    assert!(m["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(m["model"], "tiny-qwen");
    assert_eq!(m["content"][0]["type"], "text");
    assert!(!m["content"][0]["text"].as_str().unwrap().is_empty(), "{m}");
    assert!(["end_turn", "max_tokens"].contains(&m["stop_reason"].as_str().unwrap()));
    let usage = &m["usage"];
    assert!(usage["input_tokens"].as_u64().unwrap() > 5 && usage["output_tokens"].as_u64().unwrap() <= 24, "{usage}");
    // The same prompt through count_tokens counts the same input tokens.
    let count = json!({"model": "Org/Tiny-Qwen", "messages": [{"role": "user", "content": "Hello"}]});
    let (status, counted) = s.post("/v1/messages/count_tokens", count.clone()).await;
    assert_eq!(status, 200, "{counted}");
    assert_eq!(counted["input_tokens"], usage["input_tokens"]);
    let mut with_system = count;
    with_system["system"] = json!("You are terse.");
    let (_, longer) = s.post("/v1/messages/count_tokens", with_system).await;
    assert!(longer["input_tokens"].as_u64() > counted["input_tokens"].as_u64(), "the system prompt counts: {longer}");
    // And the same answer as the OpenAI route gives for it (greedy).
    let (_, chat) = s
        .post(
            "/v1/chat/completions",
            json!({"model": "tiny-qwen", "max_tokens": 24, "temperature": 0, "messages": [{"role": "user", "content": "Hello"}]}),
        )
        .await;
    assert_eq!(m["content"][0]["text"], chat["choices"][0]["message"]["content"]);
}

#[tokio::test]
async fn a_streamed_message_has_anthropics_event_sequence() {
    let s = server().await;
    let mut body = message(24);
    body["stream"] = json!(true);
    let events = events(&s, body).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(&names[..3], ["message_start", "content_block_start", "ping"]);
    assert_eq!(&names[names.len() - 3..], ["content_block_stop", "message_delta", "message_stop"]);
    assert!(names[3..names.len() - 3].iter().all(|n| *n == "content_block_delta"), "{names:?}");
    let (_, start) = &events[0];
    assert!(start["message"]["usage"]["input_tokens"].as_u64().unwrap() > 5, "{start}");
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, e)| {
            assert_eq!(e["delta"]["type"], "text_delta");
            e["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(!text.is_empty());
    let (_, whole) = s.post("/v1/messages", message(24)).await;
    assert_eq!(text, whole["content"][0]["text"].as_str().unwrap(), "stream and whole answer agree (greedy)");
    let (_, delta) = &events[events.len() - 2];
    assert_eq!(delta["usage"]["output_tokens"], whole["usage"]["output_tokens"]);
    assert_eq!(delta["delta"]["stop_reason"], whole["stop_reason"]);
}

#[tokio::test]
async fn a_stop_sequence_is_reported_as_the_stop_reason() {
    let s = server().await;
    let body = || json!({"model": "tiny-qwen", "max_tokens": 24, "temperature": 0, "messages": [{"role": "user", "content": "Hello"}]});
    let (_, free) = s.post("/v1/messages", body()).await;
    let text = free["content"][0]["text"].as_str().unwrap().to_owned();
    // A two-character stop sequence that first occurs after the start of the greedy answer.
    let (at, stop) = text
        .char_indices()
        .skip(1)
        .map(|(at, _)| (at, text[at..].chars().take(2).collect::<String>()))
        .find(|(at, stop)| stop.chars().count() == 2 && text.find(stop.as_str()) == Some(*at))
        .expect("the greedy answer is long and varied enough to hold a stop sequence");
    let mut stopped = body();
    stopped["stop_sequences"] = json!([stop]);
    let (status, m) = s.post("/v1/messages", stopped).await;
    assert_eq!(status, 200);
    assert_eq!(
        (m["stop_reason"].as_str(), m["stop_sequence"].as_str()),
        (Some("stop_sequence"), Some(stop.as_str())),
        "{m}"
    );
    assert_eq!(m["content"][0]["text"], &text[..at]);
}

#[tokio::test]
async fn errors_use_anthropics_shape() {
    let s = server().await;
    let check = |status: u16, body: &Value, kind: &str| {
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["error"]["type"], kind, "{status}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    };
    let mut missing = message(5);
    missing.as_object_mut().unwrap().remove("max_tokens");
    let (status, body) = s.post("/v1/messages", missing).await;
    assert_eq!(status, 400);
    check(status, &body, "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("max_tokens"));
    let mut unknown = message(5);
    unknown["model"] = json!("claude-nope");
    let (status, body) = s.post("/v1/messages", unknown).await;
    assert_eq!(status, 404);
    check(status, &body, "not_found_error");
    let (status, body) = s.post_raw("/v1/messages", b"{\"model\": ".to_vec()).await;
    assert_eq!(status, 400);
    check(status, &body, "invalid_request_error");
    let mut bad_role = message(5);
    bad_role["messages"] = json!([{"role": "system", "content": "x"}]);
    let (status, body) = s.post("/v1/messages", bad_role).await;
    check(status, &body, "invalid_request_error");
    let (status, body) = s.post_raw("/v1/messages", vec![b' '; 9 << 20]).await;
    assert_eq!(status, 413);
    check(status, &body, "request_too_large");
}

#[tokio::test]
async fn the_per_model_route_takes_the_model_from_the_url() {
    let s = server().await;
    let mut body = message(3);
    body.as_object_mut().unwrap().remove("model");
    let (status, m) = s.post("/tiny-qwen/v1/messages", body).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["model"], "tiny-qwen");
    let (status, _) = s.post("/nope/v1/messages", message(3)).await;
    assert_eq!(status, 404);
}
