//! Requests for a model an external engine serves on this node, passed to
//! the engine's own OpenAI API: its `"model"` set to the name the engine
//! answers to, usage always asked for so the answer is metered from the
//! engine's own count (and the usage chunk removed again when the client
//! did not ask for it), the answer streamed back event by event as it
//! comes. The engine's errors come back in GreenThread's error shape; a
//! client that goes away drops the upstream request with it. Anthropic's
//! Messages are translated onto the engine's chat API ([`super::engine_messages`]);
//! the Responses API goes to the engine's own, its conversation already whole.

use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use greenthread_node_runtime::external::EngineEndpoint;
use greenthread_protocol::error::{ApiError, ApiResult};
use greenthread_protocol::sse::{SseItem, SseParser};
use greenthread_scheduler::Lease;
use serde_json::Value;

use super::Route;
use super::metering::{counted, tallied};
use crate::usage::Tally;

/// One client for every engine on this node: loopback, no proxy from the
/// environment, a bounded connect, no overall timeout (streams run long).
pub(super) fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new())
    })
}

/// Runs a validated request on the engine at `endpoint`; `lease` keeps the
/// model counted busy until the answer's last byte. The engine is sent the
/// request's id as `x-request-id`, so its own logs name the same request.
///
/// # Errors
/// The engine's refusal or failure, or an unreachable engine (503: the
/// scheduler learns of a crash from the node and the next request restarts it).
pub async fn proxy(
    endpoint: EngineEndpoint,
    route: Route,
    raw: Bytes,
    lease: Option<Lease>,
    request_id: Option<&str>,
) -> ApiResult<Response> {
    match route {
        // vLLM and llama.cpp's server (with `--reranking`) rerank and score under the same paths.
        Route::Chat | Route::Completions | Route::Embeddings | Route::Rerank | Route::Score => {
            openai(endpoint, route, raw, lease, request_id).await
        }
        Route::Messages => super::engine_messages::messages(endpoint, raw, lease, request_id).await,
        Route::CountTokens => Err(ApiError::Unsupported {
            param: "model",
            message: "counting tokens is not available for a model served by an external engine".into(),
        }),
        Route::Responses => responses(endpoint, raw, lease, request_id).await,
        Route::Transcriptions | Route::Translations => Err(ApiError::Unsupported {
            param: "model",
            message: "transcription is available for Whisper models the builtin engine serves".into(),
        }),
        Route::Speech | Route::Voices => Err(ApiError::Unsupported {
            param: "model",
            message: "speech is available for Piper voices the builtin engine serves".into(),
        }),
    }
}

/// What the client's body asks, rewritten for the engine.
pub(super) struct Upstream {
    pub body: Value,
    pub stream: bool,
    /// The client asked for the usage chunk itself.
    pub client_usage: bool,
}

/// Sets the engine's model name and, for a stream, asks for usage.
pub(super) fn rewrite(mut body: Value, model: &str) -> ApiResult<Upstream> {
    let object = body.as_object_mut().ok_or_else(|| ApiError::BadJson("the body must be a JSON object".into()))?;
    object.insert("model".into(), Value::from(model));
    let stream = object.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let mut client_usage = false;
    if stream {
        let options = object.entry("stream_options").or_insert_with(|| Value::Object(Default::default()));
        if let Some(options) = options.as_object_mut() {
            client_usage = options.get("include_usage").and_then(Value::as_bool).unwrap_or(false);
            options.insert("include_usage".into(), Value::Bool(true));
        }
    }
    Ok(Upstream { body, stream, client_usage })
}

/// Sends `body` to the engine's `path` and returns its answer once its
/// status is known.
pub(super) async fn send(
    endpoint: &EngineEndpoint,
    path: &str,
    body: &Value,
    request_id: Option<&str>,
) -> ApiResult<reqwest::Response> {
    let url = format!("{}/v1/{path}", endpoint.base);
    let mut request = client().post(&url).json(body);
    if let Some(id) = request_id {
        request = request.header(crate::http::stamp::REQUEST_ID, id);
    }
    let answer = request
        .send()
        .await
        .map_err(|e| ApiError::Unavailable(format!("the model's engine cannot be reached ({})", e.without_url())))?;
    if answer.status().is_success() {
        return Ok(answer);
    }
    let status = answer.status().as_u16();
    let text = answer.text().await.unwrap_or_default();
    Err(ApiError::Engine { status, message: engine_message(&text) })
}

/// The message of an engine's error answer: OpenAI's `error.message`, a
/// bare `message` or `detail` (FastAPI), else the text itself.
fn engine_message(text: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let found = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .or_else(|| v.get("error").filter(|e| e.is_string()))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    found.unwrap_or_else(|| text.trim().to_owned())
}

/// `usage`'s prompt and completion tokens, if it has them (chat's names or
/// the Responses API's).
pub(super) fn usage_counts(usage: &Value) -> Option<(u32, u32)> {
    let count = |k: &str| usage.get(k).and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok());
    let prompt = count("prompt_tokens").or_else(|| count("input_tokens"))?;
    Some((prompt, count("completion_tokens").or_else(|| count("output_tokens")).unwrap_or(0)))
}

/// A Responses request on the engine's own `/v1/responses`: the
/// conversation arrives whole (a gateway expanded `previous_response_id`),
/// so the engine is asked to store nothing and continue nothing; the
/// answer says what the client asked (`store`, `previous_response_id`).
async fn responses(
    endpoint: EngineEndpoint,
    raw: Bytes,
    lease: Option<Lease>,
    request_id: Option<&str>,
) -> ApiResult<Response> {
    let mut body: Value = serde_json::from_slice(&raw).map_err(|e| ApiError::BadJson(e.to_string()))?;
    let object = body.as_object_mut().ok_or_else(|| ApiError::BadJson("the body must be a JSON object".into()))?;
    let asked = serde_json::json!({
        "store": object.get("store").and_then(Value::as_bool).unwrap_or(true),
        "previous_response_id": object.remove("previous_response_id").unwrap_or(Value::Null),
    });
    object.insert("model".into(), Value::from(endpoint.model.as_str()));
    object.insert("store".into(), Value::Bool(false));
    let stream = object.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let answer = send(&endpoint, "responses", &body, request_id).await?;
    if stream {
        return Ok(relayed(answer, Relay { client_usage: true, restore: Some(asked) }, lease));
    }
    let bytes =
        answer.bytes().await.map_err(|e| ApiError::Unavailable(format!("the engine's answer broke off ({e})")))?;
    drop(lease);
    let mut answer: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::Engine { status: 502, message: format!("the engine's answer is not JSON ({e})") })?;
    restore(&mut answer, &asked);
    let (prompt, completion) = answer.get("usage").and_then(usage_counts).unwrap_or((0, 0));
    Ok(counted(axum::Json(answer).into_response(), prompt, completion))
}

/// The engine's streamed `answer`, relayed as `how` says and metered.
fn relayed(answer: reqwest::Response, how: Relay, lease: Option<Lease>) -> Response {
    let tally = Tally::default();
    let events = relay(answer.bytes_stream(), how, tally.clone(), lease);
    let mut response = Response::new(Body::from_stream(events));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    tallied(response, tally)
}

/// The client's own `store` and `previous_response_id` on a `response` object.
fn restore(response: &mut Value, asked: &Value) {
    if let (Some(fields), Some(asked)) = (response.as_object_mut(), asked.as_object()) {
        fields.extend(asked.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
}

/// How an engine's stream is passed on.
struct Relay {
    /// The client asked for chat's usage chunk itself.
    client_usage: bool,
    /// Fields the client asked for, set again on every `response` object
    /// of a Responses stream.
    restore: Option<Value>,
}

async fn openai(
    endpoint: EngineEndpoint,
    route: Route,
    raw: Bytes,
    lease: Option<Lease>,
    request_id: Option<&str>,
) -> ApiResult<Response> {
    let body: Value = serde_json::from_slice(&raw).map_err(|e| ApiError::BadJson(e.to_string()))?;
    let upstream = rewrite(body, &endpoint.model)?;
    let answer = send(&endpoint, route_path(route), &upstream.body, request_id).await?;
    if upstream.stream {
        let relay_as = Relay { client_usage: upstream.client_usage, restore: None };
        return Ok(relayed(answer, relay_as, lease));
    }
    let bytes =
        answer.bytes().await.map_err(|e| ApiError::Unavailable(format!("the engine's answer broke off ({e})")))?;
    drop(lease);
    let (prompt, completion) = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("usage").and_then(usage_counts))
        .unwrap_or((0, 0));
    let mut response = Response::new(Body::from(bytes));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(counted(response, prompt, completion))
}

fn route_path(route: Route) -> &'static str {
    match route {
        Route::Completions => "completions",
        Route::Embeddings => "embeddings",
        Route::Rerank => "rerank",
        Route::Score => "score",
        _ => "chat/completions",
    }
}

/// The engine's event stream passed on event by event: the usage chunk
/// (chat's, or the Responses API's final `response`) read, and chat's
/// dropped unless the client asked for it; the usage comment every
/// GreenThread stream carries for a gateway's meter added; a stream that
/// breaks off before its end (`[DONE]`, or the Responses API's final event)
/// ended with an error event the SDKs raise.
fn relay(
    mut upstream: impl Stream<Item = reqwest::Result<Bytes>> + Unpin + Send + 'static,
    Relay { client_usage, restore: restored }: Relay,
    tally: Tally,
    lease: Option<Lease>,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    async_stream::stream! {
        let _lease = lease;
        let mut parser = SseParser::new();
        let mut done = false;
        loop {
            let chunk = match upstream.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "The engine's stream broke off");
                    break;
                }
                None => break,
            };
            let mut out = String::new();
            for item in parser.feed(&chunk) {
                let SseItem::Event { name, mut data } = item else { continue };
                let mut parsed: Option<Value> = serde_json::from_str(&data).ok();
                let kind = parsed.as_ref().and_then(|v| v["type"].as_str()).unwrap_or_default();
                done |= data == "[DONE]" || matches!(kind, "response.completed" | "response.incomplete" | "response.failed");
                if let (Some(asked), Some(event)) = (&restored, parsed.as_mut())
                    && event.get("response").is_some_and(Value::is_object)
                {
                    restore(&mut event["response"], asked);
                    data = event.to_string();
                }
                let usage = parsed
                    .as_ref()
                    .and_then(|v| v.get("usage").or_else(|| v.get("response").and_then(|r| r.get("usage"))))
                    .and_then(usage_counts);
                if let Some((prompt, completion)) = usage {
                    tally.tokens(prompt, completion);
                    let usage = serde_json::json!({"prompt_tokens": prompt, "completion_tokens": completion});
                    out.push_str(&format!(": usage {usage}\n\n"));
                    let usage_only = parsed.as_ref().and_then(|v| v.get("choices")).and_then(Value::as_array).is_some_and(Vec::is_empty);
                    if usage_only && !client_usage {
                        continue;
                    }
                }
                if let Some(name) = name {
                    out.push_str(&format!("event: {name}\n"));
                }
                for line in data.split('\n') {
                    out.push_str(&format!("data: {line}\n"));
                }
                out.push('\n');
            }
            if !out.is_empty() {
                yield Ok(Bytes::from(out));
            }
        }
        if !done {
            // Cut off (a crash) rather than finished: the SDKs raise this event.
            tally.failed();
            let error = ApiError::Unavailable("the model's engine stopped mid-stream".into());
            yield Ok(Bytes::from(format!("data: {}\n\n", error.body())));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn the_engine_is_sent_the_requests_id() {
        use axum::http::HeaderMap;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let base = format!("http://{}", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
        let echo = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(|headers: HeaderMap| async move {
                let id = headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                axum::Json(json!({ "seen": id }))
            }),
        );
        tokio::spawn(async move { axum::serve(listener, echo).await });
        let endpoint = EngineEndpoint { base, model: "m".into() };
        let answer = send(&endpoint, "chat/completions", &json!({}), Some("req-42")).await;
        let seen: Value = answer.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or_default();
        assert_eq!(seen["seen"], "req-42");
    }

    #[test]
    fn a_stream_asks_for_usage_and_remembers_whether_the_client_did() {
        let up = rewrite(json!({"model": "alias", "stream": true, "messages": []}), "qwen")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(up.body["model"], "qwen");
        assert_eq!(up.body["stream_options"]["include_usage"], true);
        assert!(up.stream && !up.client_usage);
        let asked = json!({"model": "q", "stream": true, "stream_options": {"include_usage": true}});
        assert!(rewrite(asked, "q").is_ok_and(|u| u.client_usage));
        let whole = rewrite(json!({"model": "q"}), "q").unwrap_or_else(|e| panic!("{e}"));
        assert!(!whole.stream && whole.body.get("stream_options").is_none());
        assert!(rewrite(json!([1]), "q").is_err());
    }

    #[test]
    fn engine_errors_are_read_in_every_shape_they_come_in() {
        assert_eq!(engine_message(r#"{"error":{"message":"context too long","type":"x"}}"#), "context too long");
        assert_eq!(engine_message(r#"{"detail":"bad field"}"#), "bad field");
        assert_eq!(engine_message(r#"{"error":"Model not found"}"#), "Model not found");
        assert_eq!(engine_message(" plain text \n"), "plain text");
        let refused = ApiError::Engine { status: 400, message: "x".into() };
        assert_eq!(refused.status(), 400);
        assert_eq!(ApiError::Engine { status: 500, message: "x".into() }.status(), 502);
        assert_eq!(refused.body()["error"]["type"], "invalid_request_error");
    }

    #[tokio::test]
    async fn a_stream_cut_before_its_end_ends_with_an_error_event() {
        let chunks =
            vec![Ok(Bytes::from_static(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n"))];
        let tally = Tally::default();
        let relay_as = Relay { client_usage: false, restore: None };
        let out: Vec<_> = relay(futures_util::stream::iter(chunks), relay_as, tally.clone(), None).collect().await;
        let last = out.last().and_then(|c| c.as_ref().ok()).map(|b| String::from_utf8_lossy(b).into_owned());
        assert!(last.is_some_and(|l| l.contains("stopped mid-stream")));
        assert!(tally.read().failed);
    }

    #[tokio::test]
    async fn the_usage_chunk_is_metered_and_dropped_unless_asked_for() {
        let engine = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":1}}\n\n",
            "data: [DONE]\n\n"
        );
        // Split mid-event, as a network would.
        let (a, b) = engine.split_at(30);
        for client_usage in [false, true] {
            let chunks = vec![Ok(Bytes::from(a.to_owned())), Ok(Bytes::from(b.to_owned()))];
            let tally = Tally::default();
            let relay_as = Relay { client_usage, restore: None };
            let out: Vec<_> = relay(futures_util::stream::iter(chunks), relay_as, tally.clone(), None).collect().await;
            let text: String =
                out.into_iter().map(|c| String::from_utf8_lossy(&c.unwrap_or_default()).into_owned()).collect();
            assert!(text.contains("\"content\":\"Hi\"") && text.ends_with("data: [DONE]\n\n"), "{text}");
            let comment = text.lines().find_map(|l| l.strip_prefix(": usage ")).unwrap_or_default();
            let usage: Value = serde_json::from_str(comment).unwrap_or_default();
            assert_eq!(usage_counts(&usage), Some((7, 1)), "{text}");
            assert_eq!(text.contains("\"choices\":[]"), client_usage, "{text}");
            assert_eq!(tally.read().tokens, Some((7, 1)));
        }
    }
}
