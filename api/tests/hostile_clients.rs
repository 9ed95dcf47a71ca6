//! Clients that trickle, flood, or send what the API promises to refuse,
//! over real TCP on loopback against the real server with a tiny model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use greenthread_api::http::ConnectionLimits;
use greenthread_api::http::limits::Limits;
use greenthread_node_runtime::fixtures::TinyModel;
use serde_json::{Value, json};
use support::{Served, Setup, TestServer, chat};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SHORT: Duration = Duration::from_millis(500);

async fn strict_server() -> TestServer {
    let setup = Setup {
        limits: Limits { body_read_timeout: SHORT, max_request_bytes: 64 * 1024, ..Limits::default() },
        connections: ConnectionLimits { header_read_timeout: SHORT, max_connections: 4 },
        ..Setup::default()
    };
    TestServer::start_with(vec![Served::new("tiny", TinyModel::qwen2())], setup).await
}

async fn connect(s: &TestServer) -> TcpStream {
    TcpStream::connect(s.base.trim_start_matches("http://")).await.unwrap()
}

/// Everything the server sends until it closes (or resets) the
/// connection, or `None` if it keeps it open past `wait`.
async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(wait, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The server's answer: what it sends until a whole JSON body has arrived
/// (or the connection ends), within `wait`.
async fn read_answer(stream: &mut TcpStream, wait: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(wait, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&out);
            if let Some((_, body)) = text.split_once("\r\n\r\n")
                && serde_json::from_str::<Value>(body).is_ok()
            {
                return;
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off() {
    let s = strict_server().await;
    let mut stream = connect(&s).await;
    stream.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.is_some(), "the connection must be closed after the header timeout");
    assert_eq!(s.get("/health").await.0, 200);
}

#[tokio::test]
async fn a_body_that_stops_arriving_gets_408() {
    let s = strict_server().await;
    let mut stream = connect(&s).await;
    stream
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    let answer = read_answer(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

#[tokio::test]
async fn an_oversized_content_length_is_refused_before_the_body() {
    let s = strict_server().await;
    let mut stream = connect(&s).await;
    stream
        .write_all(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n")
        .await
        .unwrap();
    let head = read_answer(&mut stream, Duration::from_secs(2)).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("\"type\":\"error\""), "the Messages API answers in Anthropic's shape: {head}");
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_and_the_rest_still_served() {
    let s = strict_server().await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut stream = connect(&s).await;
        // Half a request line: each holds a connection slot until its header timeout.
        stream.write_all(b"GET /hea").await.unwrap();
        idle.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut extra = connect(&s).await;
    let _ = extra.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let answer = read_until_closed(&mut extra, Duration::from_secs(2)).await;
    assert_eq!(answer.as_deref(), Some(""), "closed without an answer while 4 connections are open");
    drop(idle);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.get("/health").await.0, 200, "slots free up as connections end");
}

#[tokio::test]
async fn promised_refusals_happen_by_name() {
    let s = strict_server().await;
    let param = |answer: &Value| answer["error"]["param"].as_str().map(str::to_owned);

    let mut body = chat("tiny", "hi", 4);
    body["stop"] = json!(["x".repeat(10_000)]);
    let (status, answer) = s.post("/v1/chat/completions", body).await;
    assert_eq!((status, param(&answer).as_deref()), (400, Some("stop")), "{answer}");

    let mut body = chat("tiny", "hi", 4);
    body["logit_bias"] = json!({"99999999": 5});
    let (status, answer) = s.post("/v1/chat/completions", body).await;
    assert_eq!((status, param(&answer).as_deref()), (400, Some("logit_bias")), "{answer}");
    let mut body = chat("tiny", "hi", 4);
    body["logit_bias"] = json!({"1": 500});
    assert_eq!(param(&s.post("/v1/chat/completions", body).await.1).as_deref(), Some("logit_bias"));

    let name = "m".repeat(100_000);
    let (status, answer) = s.post_raw("/v1/chat/completions", serde_json::to_vec(&chat(&name, "hi", 1)).unwrap()).await;
    assert_eq!(status, 413, "a 100 kB name is past this server's 64 kB limit: {answer}");
    let name = "m".repeat(30_000);
    let (status, answer) = s.post("/v1/chat/completions", chat(&name, "hi", 1)).await;
    assert_eq!(status, 404);
    assert!(answer["error"]["message"].as_str().unwrap().len() < 400, "{answer}");

    for schema in [json!({"$ref": "#"}), json!({"type": "array", "minItems": 5, "maxItems": 2})] {
        let mut body = chat("tiny", "hi", 8);
        body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}});
        let (status, answer) = s.post("/v1/chat/completions", body).await;
        assert_eq!((status, param(&answer).as_deref()), (400, Some("response_format.json_schema.schema")), "{answer}");
    }
    let resp = s.client.get(s.url("/v1/messages")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["type"], "error", "Anthropic's shape on the Messages route: {answer}");
}

#[tokio::test]
async fn logit_bias_steers_greedy_output() {
    let s = strict_server().await;
    let prompt = |bias: Option<Value>| {
        let mut body = json!({"model": "tiny", "prompt": "the world", "max_tokens": 1, "temperature": 0});
        if let Some(b) = bias {
            body["logit_bias"] = b;
        }
        body
    };
    let (_, plain) = s.post("/v1/completions", prompt(None)).await;
    let first = plain["choices"][0]["text"].as_str().unwrap().to_owned();
    // Ban every token the greedy answer could start with, one at a time, until it changes.
    let mut changed = false;
    let vocab = TinyModel::qwen2().vocab_size() as u32;
    for token in 0..vocab {
        let (status, biased) = s.post("/v1/completions", prompt(Some(json!({token.to_string(): -100})))).await;
        assert_eq!(status, 200, "{biased}");
        if biased["choices"][0]["text"] != first.as_str() {
            changed = true;
            let (_, promoted) = s.post("/v1/completions", prompt(Some(json!({token.to_string(): 100})))).await;
            assert_eq!(promoted["choices"][0]["text"], first.as_str(), "promoting the banned token brings it back");
            break;
        }
    }
    assert!(changed, "banning the greedy token changes the answer");
}

#[tokio::test]
async fn json_object_on_completions_is_enforced() {
    let s = strict_server().await;
    let body = json!({"model": "tiny", "prompt": "data:", "max_tokens": 48, "temperature": 0,
                      "response_format": {"type": "json_object"}});
    let (status, answer) = s.post("/v1/completions", body).await;
    assert_eq!(status, 200, "{answer}");
    let text = answer["choices"][0]["text"].as_str().unwrap();
    assert!(text.starts_with('{'), "{text:?} is not the start of a JSON object");
    if answer["choices"][0]["finish_reason"] == "stop" {
        assert!(serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object()), "{text:?}");
    }
}

#[tokio::test]
async fn a_client_that_connects_and_sends_nothing_is_cut_off() {
    let s = strict_server().await;
    let mut silent = connect(&s).await;
    assert!(read_until_closed(&mut silent, Duration::from_secs(5)).await.is_some(), "closed after the header timeout");
    let mut preface = connect(&s).await;
    // Half of HTTP/2's connection preface, then nothing.
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    assert!(read_until_closed(&mut preface, Duration::from_secs(5)).await.is_some(), "closed after the header timeout");
}
