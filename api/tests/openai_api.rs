//! The OpenAI-compatible API over real HTTP on loopback, with tiny generated
//! models behind it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;

use candle_core::Device;
use greenthread_core::{ChatMessage, Role};
use greenthread_node_runtime::ModelInstance;
use greenthread_node_runtime::builtin::{BuiltinModel, LoadOptions, load_gguf};
use greenthread_node_runtime::fixtures::TinyModel;
use serde_json::{Value, json};
use support::{Served, TestServer, chat};

async fn qwen_server() -> TestServer {
    TestServer::start(vec![
        Served::new("tiny-qwen", TinyModel::qwen2()).alias("Org/Tiny-Qwen"),
        Served::new("tiny-gemma", TinyModel::gemma3()),
    ])
    .await
}

#[tokio::test]
async fn models_are_listed_and_retrievable_by_name_or_alias() {
    let s = qwen_server().await;
    let (status, list) = s.get("/v1/models").await;
    assert_eq!(status, 200);
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["tiny-qwen", "tiny-gemma"]);
    assert_eq!(list["data"][0]["object"], "model");
    assert_eq!(list["data"][0]["owned_by"], "greenthread");
    assert_eq!(s.get("/v1/models/Org/Tiny-Qwen").await.1["id"], "tiny-qwen");
    assert_eq!(s.get("/v1/models/nope").await.0, 404);
    let (_, one) = s.get("/tiny-gemma/v1/models").await;
    assert_eq!(one["data"].as_array().unwrap().len(), 1);
    assert_eq!(one["data"][0]["id"], "tiny-gemma");
}

#[tokio::test]
async fn chat_completion_reports_real_token_counts() {
    let s = qwen_server().await;
    let (status, body) = s.post("/v1/chat/completions", chat("tiny-qwen", "Hello world", 12)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["model"], "tiny-qwen");
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(choice["message"]["content"].is_string());

    // The prompt count is what the model's own template and tokenizer make of the messages.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    TinyModel::qwen2().write(&path).unwrap();
    let model = BuiltinModel::start(load_gguf(&path, &LoadOptions::default(), &Device::Cpu).unwrap(), 1, "t").unwrap();
    let prompt = model.chat_prompt(&[ChatMessage::text(Role::User, "Hello world")], None).unwrap();
    let usage = &body["usage"];
    assert_eq!(usage["prompt_tokens"], prompt.len());
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!((1..=12).contains(&completion));
    if choice["finish_reason"] == "length" {
        assert_eq!(completion, 12);
    } else {
        assert_eq!(choice["finish_reason"], "stop");
    }
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), prompt.len() as u64 + completion);
}

#[tokio::test]
async fn greedy_answers_repeat_and_the_alias_and_per_model_url_reach_the_same_model() {
    let s = qwen_server().await;
    let by_name = s.post("/v1/chat/completions", chat("tiny-qwen", "the world", 10)).await.1;
    let by_alias = s.post("/v1/chat/completions", chat("Org/Tiny-Qwen", "the world", 10)).await.1;
    let by_url = s.post("/tiny-qwen/v1/chat/completions", chat("ignored-by-this-route", "the world", 10)).await.1;
    let content = |b: &Value| b["choices"][0]["message"]["content"].clone();
    assert_eq!(content(&by_name), content(&by_alias));
    assert_eq!(content(&by_name), content(&by_url));
    assert_eq!(by_url["model"], "tiny-qwen");
}

#[tokio::test]
async fn a_stream_shares_one_id_ends_with_usage_and_done_and_matches_the_whole_answer() {
    let s = qwen_server().await;
    let mut body = chat("tiny-qwen", "Hello", 16);
    let whole = s.post("/v1/chat/completions", body.clone()).await.1;
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let events = s.stream("/v1/chat/completions", body).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let ids: HashSet<&str> = chunks.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1, "every chunk carries the same id");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String =
        chunks.iter().filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str()).collect::<Vec<_>>().concat();
    assert_eq!(text, whole["choices"][0]["message"]["content"].as_str().unwrap());
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"], whole["usage"]);
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c["usage"].is_null()));
    let finish = &chunks[chunks.len() - 2]["choices"][0];
    assert_eq!(finish["finish_reason"], whole["choices"][0]["finish_reason"]);
}

#[tokio::test]
async fn a_stream_without_usage_has_no_usage_field() {
    let s = qwen_server().await;
    let mut body = chat("tiny-qwen", "Hello", 4);
    body["stream"] = json!(true);
    let events = s.stream("/v1/chat/completions", body).await;
    for e in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(e).unwrap();
        assert!(chunk.get("usage").is_none(), "{chunk}");
    }
}

#[tokio::test]
async fn n_choices_each_have_their_index_and_seeded_sampling_repeats() {
    let s = qwen_server().await;
    let body = json!({
        "model": "tiny-qwen",
        "messages": [{"role": "user", "content": "Hello"}],
        "n": 3, "seed": 42, "temperature": 1.0, "max_tokens": 8,
    });
    let first = s.post("/v1/chat/completions", body.clone()).await.1;
    let second = s.post("/v1/chat/completions", body).await.1;
    let indices: Vec<u64> = first["choices"].as_array().unwrap().iter().map(|c| c["index"].as_u64().unwrap()).collect();
    assert_eq!(indices, [0, 1, 2]);
    assert_eq!(first["choices"], second["choices"], "the same seed gives the same choices");
    let total: u64 = first["choices"].as_array().unwrap().len() as u64;
    assert!(first["usage"]["completion_tokens"].as_u64().unwrap() >= total);
}

#[tokio::test]
async fn a_stop_sequence_cuts_the_output_before_it() {
    let s = qwen_server().await;
    let whole = s.post("/v1/chat/completions", chat("tiny-qwen", "Hello", 24)).await.1;
    let text = whole["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
    // A two-character stop sequence that first occurs after the start of the greedy answer.
    let (at, stop) = text
        .char_indices()
        .skip(1)
        .map(|(at, _)| (at, text[at..].chars().take(2).collect::<String>()))
        .find(|(at, stop)| stop.chars().count() == 2 && text.find(stop.as_str()) == Some(*at))
        .expect("the greedy answer is long and varied enough to hold a stop sequence");
    let expected = &text[..at];
    let mut body = chat("tiny-qwen", "Hello", 24);
    body["stop"] = json!(stop);
    let cut = s.post("/v1/chat/completions", body).await.1;
    assert_eq!(cut["choices"][0]["message"]["content"], expected);
    assert_eq!(cut["choices"][0]["finish_reason"], "stop");
    assert_eq!(cut["choices"][0]["stop_reason"], json!(stop), "the matched stop sequence, as vLLM reports it");
}

#[tokio::test]
async fn completions_echo_and_token_prompts_work_on_both_routes() {
    let s = qwen_server().await;
    let body = json!({"model": "tiny-gemma", "prompt": "the world", "max_tokens": 5, "temperature": 0, "echo": true});
    let (status, out) = s.post("/v1/completions", body).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["object"], "text_completion");
    assert!(out["choices"][0]["text"].as_str().unwrap().starts_with("the world"));
    let tokens = json!({"model": "x", "prompt": [[40, 41, 42], [43, 44]], "max_tokens": 3, "temperature": 0});
    let (status, out) = s.post("/tiny-gemma/v1/completions", tokens).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["choices"].as_array().unwrap().len(), 2);
    assert_eq!(out["usage"]["prompt_tokens"], 5);
}

#[tokio::test]
async fn streamed_completions_end_with_done() {
    let s = qwen_server().await;
    let body = json!({"model": "tiny-qwen", "prompt": "Hello", "max_tokens": 6, "temperature": 0, "stream": true});
    let events = s.stream("/v1/completions", body).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["object"], "text_completion");
}

async fn assert_error(s: &TestServer, path: &str, body: Value, status: u16, param: Option<&str>, code: &str) {
    let (got, out) = s.post(path, body.clone()).await;
    assert_eq!(got, status, "{body} → {out}");
    let err = &out["error"];
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "{out}");
    assert_eq!(err["type"], if status >= 500 { "server_error" } else { "invalid_request_error" });
    assert_eq!(err["param"].as_str(), param, "{out}");
    assert_eq!(err["code"], code, "{out}");
}

#[tokio::test]
async fn bad_requests_get_openai_errors_and_leave_the_server_answering_correctly() {
    let s = TestServer::start(vec![Served::new("tiny-qwen", TinyModel::qwen2()).context(64)]).await;
    let before = s.post("/v1/chat/completions", chat("tiny-qwen", "Hello", 8)).await.1;

    assert_error(&s, "/v1/chat/completions", chat("nope", "x", 4), 404, Some("model"), "model_not_found").await;
    assert_error(&s, "/nope/v1/chat/completions", chat("tiny-qwen", "x", 4), 404, Some("model"), "model_not_found")
        .await;
    let mut hot = chat("tiny-qwen", "x", 4);
    hot["temperature"] = json!("hot");
    assert_error(&s, "/v1/chat/completions", hot, 400, Some("temperature"), "invalid_value").await;
    let mut n = chat("tiny-qwen", "x", 4);
    n["n"] = json!(1000);
    assert_error(&s, "/v1/chat/completions", n, 400, Some("n"), "invalid_value").await;
    assert_error(&s, "/v1/chat/completions", json!({"model": "tiny-qwen"}), 400, Some("messages"), "invalid_value")
        .await;
    let long = "the world ".repeat(40);
    assert_error(
        &s,
        "/v1/chat/completions",
        chat("tiny-qwen", &long, 4),
        400,
        Some("messages"),
        "context_length_exceeded",
    )
    .await;
    let (status, out) = s.post_raw("/v1/chat/completions", b"{\"model\": ".to_vec()).await;
    assert_eq!((status, out["error"]["code"].as_str()), (400, Some("invalid_json")));
    let (status, out) = s.post_raw("/v1/chat/completions", vec![0xff, 0xfe]).await;
    assert_eq!((status, out["error"]["code"].as_str()), (400, Some("invalid_json")));
    let big = json!({"model": "tiny-qwen", "messages": [{"role": "user", "content": "x".repeat(9 << 20)}]});
    let (status, out) = s.post("/v1/chat/completions", big).await;
    assert_eq!((status, out["error"]["code"].as_str()), (413, Some("request_too_large")));
    let (status, out) = s.post("/v1/embeddings/unknown", json!({})).await;
    assert_eq!((status, out["error"]["code"].as_str()), (404, Some("unknown_url")));
    let resp = s.client.delete(s.url("/v1/models")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let tokens = json!({"model": "tiny-qwen", "prompt": [1, 99999999], "max_tokens": 2});
    assert_error(&s, "/v1/completions", tokens, 400, Some("prompt"), "invalid_value").await;

    let after = s.post("/v1/chat/completions", chat("tiny-qwen", "Hello", 8)).await.1;
    assert_eq!(before["choices"], after["choices"], "bad input must not change later answers");
}

#[tokio::test]
async fn concurrent_requests_get_the_same_answers_as_sequential_ones() {
    let s = qwen_server().await;
    let prompts: Vec<String> = (0..8).map(|i| format!("Hello {} the world", "ab".repeat(i))).collect();
    let mut sequential = Vec::new();
    for p in &prompts {
        sequential.push(s.post("/v1/chat/completions", chat("tiny-qwen", p, 12)).await.1["choices"].clone());
    }
    let concurrent = futures_util::future::join_all(
        prompts.iter().map(|p| s.post("/v1/chat/completions", chat("tiny-qwen", p, 12))),
    )
    .await;
    for (i, (seq, (status, conc))) in sequential.iter().zip(concurrent).enumerate() {
        assert_eq!(status, 200);
        assert_eq!(seq, &conc["choices"], "request {i} answered differently when batched");
    }
}

/// A shutdown drains: readiness goes off, no new connection is taken, and a
/// stream in flight runs to its end before the server stops.
#[tokio::test]
async fn a_stream_in_flight_finishes_when_the_server_drains() {
    let mut s = qwen_server().await;
    assert_eq!(s.get("/ready").await, (200, json!({"status": "ready"})));
    let mut body = chat("tiny-qwen", "the world", 200);
    body["stream"] = json!(true);
    let mut resp = s.client.post(s.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    let mut text = String::from_utf8(resp.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    s.shut_down();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(s.readiness.is_draining());
    let fresh = reqwest::Client::new();
    assert!(fresh.get(s.url("/health")).send().await.is_err(), "a new connection is refused while draining");
    while let Some(chunk) = resp.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.trim_end().ends_with("data: [DONE]"), "the stream ran to its end: {text}");
    assert!(text.contains("\"finish_reason\":\"length\"") || text.contains("\"finish_reason\":\"stop\""), "{text}");
    let served = s.served.take().unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), served).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn a_model_at_its_bound_refuses_at_once_as_overloaded_and_takes_requests_again_after() {
    let s = TestServer::start(vec![Served::new("tiny-qwen", TinyModel::qwen2()).scaling(|sc| {
        sc.max_concurrency = Some(1);
        sc.max_queue = Some(0);
    })])
    .await;
    let mut body = chat("tiny-qwen", "the world", 400);
    body["stream"] = json!(true);
    let mut held = s.client.post(s.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    let _first = held.chunk().await.unwrap();

    let refused = s.client.post(s.url("/v1/chat/completions")).json(&chat("tiny-qwen", "Hi", 4)).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["type"], "overloaded_error", "{error}");
    assert_eq!(error["error"]["code"], "model_overloaded", "{error}");

    let messages = json!({"model": "tiny-qwen", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]});
    let refused = s.client.post(s.url("/v1/messages")).json(&messages).send().await.unwrap();
    assert_eq!(refused.status(), 529, "Anthropic's overloaded status");
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["type"], "overloaded_error", "{error}");

    drop(held);
    // The place comes back once the abandoned stream's body is dropped.
    let mut status = 0;
    for _ in 0..50 {
        status = s.post("/v1/chat/completions", chat("tiny-qwen", "Hi", 4)).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200, "admitted again once the stream is gone");
}

#[tokio::test]
async fn metrics_time_the_first_token_the_gaps_after_it_and_each_route() {
    let s = qwen_server().await;
    let mut body = chat("tiny-qwen", "the world", 12);
    body["stream"] = json!(true);
    let events = s.stream("/v1/chat/completions", body).await;
    let pieces = events.iter().filter(|e| e.contains("\"content\":\"") && !e.contains("\"content\":\"\"")).count();
    assert!(pieces >= 2, "{events:?}");
    assert_eq!(s.post("/v1/chat/completions", chat("tiny-qwen", "Hello", 4)).await.0, 200);

    let model = r#"{model="tiny-qwen"}"#;
    assert_eq!(s.metric(&format!("greenthread_time_to_first_token_seconds_count{model}")).await, 1.0, "streams only");
    let gaps = s.metric(&format!("greenthread_inter_token_latency_seconds_count{model}")).await;
    assert_eq!(gaps, (pieces - 1) as f64, "one gap between each piece of output and the next");
    assert_eq!(s.metric(&format!("greenthread_e2e_request_latency_seconds_count{model}")).await, 2.0);
    assert_eq!(s.metric(&format!("greenthread_request_queue_time_seconds_count{model}")).await, 2.0);
    assert!(s.metric(&format!("greenthread_time_to_first_token_seconds_sum{model}")).await > 0.0);
    let chat_route = r#"greenthread_http_requests_total{method="POST",route="/v1/chat/completions",status="200"}"#;
    assert_eq!(s.metric(chat_route).await, 2.0);
    assert_eq!(s.metric(&format!("greenthread_num_requests_running{model}")).await, 0.0, "nothing in hand");

    let mut body = chat("tiny-qwen", "the world", 400);
    body["stream"] = json!(true);
    let mut held = s.client.post(s.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    let _first = held.chunk().await.unwrap();
    let _second = held.chunk().await.unwrap();
    assert_eq!(s.metric(&format!("greenthread_num_requests_running{model}")).await, 1.0);
    assert_eq!(s.metric(&format!("greenthread_batch_size{model}")).await, 1.0, "one sequence in the batch");
    let kv = s.metric(&format!("greenthread_kv_cache_usage_perc{model}")).await;
    assert!(kv > 0.0 && kv < 1.0, "the stream's tokens hold part of the KV cache: {kv}");
}

#[tokio::test]
async fn a_prompt_that_starts_like_an_earlier_one_reuses_its_cached_head_and_answers_the_same() {
    let s = qwen_server().await;
    let model = r#"{model="tiny-qwen"}"#;
    let (queries, hits) = (
        format!("greenthread_prefix_cache_queries_total{model}"),
        format!("greenthread_prefix_cache_hits_total{model}"),
    );
    let system = "You are a careful assistant. Answer in one short sentence, plainly, without lists. ".repeat(3);
    let ask = |question: &str| {
        let mut body = chat("tiny-qwen", question, 8);
        body["messages"] = json!([{"role": "system", "content": system}, {"role": "user", "content": question}]);
        body
    };
    let (status, first) = s.post("/v1/chat/completions", ask("What is the capital of France?")).await;
    assert_eq!(status, 200, "{first}");
    let prompt = first["usage"]["prompt_tokens"].as_f64().unwrap();
    assert!(prompt > 40.0, "a long shared head: {prompt} tokens");
    assert_eq!(s.metric(&queries).await, prompt, "every prompt token is looked up");
    assert_eq!(s.metric(&hits).await, 0.0, "nothing was cached before the first request");

    // The same prompt again: all but its last token come from the cache, and the answer is the same.
    let (_, again) = s.post("/v1/chat/completions", ask("What is the capital of France?")).await;
    assert_eq!(again["choices"][0]["message"], first["choices"][0]["message"]);
    assert_eq!(s.metric(&hits).await, prompt - 1.0);

    // Another question after the same system prompt reuses the shared head only.
    let (status, other) = s.post("/v1/chat/completions", ask("Name a large river.")).await;
    assert_eq!(status, 200, "{other}");
    let reused = s.metric(&hits).await - (prompt - 1.0);
    let other_prompt = other["usage"]["prompt_tokens"].as_f64().unwrap();
    assert!(reused >= 40.0 && reused < other_prompt - 1.0, "reused {reused} of {other_prompt}");
    assert_eq!(s.metric(&queries).await, 2.0 * prompt + other_prompt);
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_stream_does_not_disturb_the_next_request() {
    let s = qwen_server().await;
    let expected = s.post("/v1/chat/completions", chat("tiny-qwen", "Hello", 8)).await.1;
    let mut body = chat("tiny-qwen", "the world", 400);
    body["stream"] = json!(true);
    let mut resp = s.client.post(s.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    let _first = resp.chunk().await.unwrap();
    drop(resp);
    let again = s.post("/v1/chat/completions", chat("tiny-qwen", "Hello", 8)).await.1;
    assert_eq!(expected["choices"], again["choices"]);
}
