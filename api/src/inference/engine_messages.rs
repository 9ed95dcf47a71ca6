//! Anthropic's Messages for a model an external engine serves: the request
//! translated onto the engine's chat API as for any model, and the engine's
//! chat answer — text, tool calls, how it ended, its token counts — turned
//! into Anthropic's answer, whole or as its stream of named events.

use std::collections::BTreeMap;

use axum::Json;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use greenthread_core::FinishReason;
use greenthread_core::grammar::ParsedToolCall;
use greenthread_node_runtime::external::EngineEndpoint;
use greenthread_protocol::anthropic::answer::{self, Generated, MessageStream, NamedEvent};
use greenthread_protocol::anthropic::translate;
use greenthread_protocol::anthropic::types::MessagesRequest;
use greenthread_protocol::error::{ApiError, ApiResult};
use greenthread_protocol::sse::{SseItem, SseParser};
use greenthread_scheduler::Lease;
use serde_json::Value;

use super::engine_proxy::{rewrite, send, usage_counts};
use super::metering::{counted, tallied, usage_comment};
use crate::usage::Tally;

pub(super) async fn messages(
    endpoint: EngineEndpoint,
    raw: Bytes,
    lease: Option<Lease>,
    request_id: Option<&str>,
) -> ApiResult<Response> {
    let request: MessagesRequest = serde_json::from_slice(&raw).map_err(|e| ApiError::BadJson(e.to_string()))?;
    let stream = request.stream.unwrap_or(false);
    let mut chat = translate::to_openai(&request, &endpoint.model)?;
    chat["stream"] = Value::Bool(stream);
    let upstream = rewrite(chat, &endpoint.model)?;
    let answer = send(&endpoint, "chat/completions", &upstream.body, request_id).await?;
    if stream {
        return Ok(relay(endpoint.model, answer, lease));
    }
    let body: Value =
        answer.json().await.map_err(|e| ApiError::Unavailable(format!("the engine's answer broke off ({e})")))?;
    drop(lease);
    let (input_tokens, output_tokens) = body.get("usage").and_then(usage_counts).unwrap_or((0, 0));
    let choice = body.pointer("/choices/0").cloned().unwrap_or(Value::Null);
    let text = choice.pointer("/message/content").and_then(Value::as_str).unwrap_or_default().to_owned();
    let calls = choice
        .pointer("/message/tool_calls")
        .and_then(Value::as_array)
        .map(|calls| calls.iter().filter_map(parsed_call).collect())
        .unwrap_or_default();
    let finish = finish_reason(choice.get("finish_reason").and_then(Value::as_str));
    let whole = answer::whole(&endpoint.model, Generated { text, calls, finish, input_tokens, output_tokens });
    Ok(counted(Json(whole).into_response(), input_tokens, output_tokens))
}

/// OpenAI's `finish_reason` as the finish Anthropic's stop reason is made from.
fn finish_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        Some("length") => FinishReason::MaxTokens,
        _ => FinishReason::EndOfTurn,
    }
}

/// A whole tool call of an OpenAI answer; arguments that are not JSON are kept as text.
fn parsed_call(call: &Value) -> Option<ParsedToolCall> {
    let name = call.pointer("/function/name")?.as_str()?.to_owned();
    let raw = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
    Some(ParsedToolCall { name, arguments: arguments(raw) })
}

fn arguments(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

/// A tool call arriving in pieces: its name first, its arguments in fragments.
#[derive(Default)]
struct PartialCall {
    name: String,
    arguments: String,
}

fn sse(event: NamedEvent) -> Result<Event, std::convert::Infallible> {
    Ok(Event::default().event(event.0).data(event.1.to_string()))
}

/// The engine's chat stream as Anthropic's: text as it comes, each tool
/// call once complete, then how it ended with the engine's counts. The
/// prompt's count is known only at the end, so `message_start` says 0 and
/// `message_delta` carries it.
fn relay(model: String, answer: reqwest::Response, lease: Option<Lease>) -> Response {
    let tally = Tally::default();
    let reporting = tally.clone();
    let mut upstream = answer.bytes_stream();
    let body = async_stream::stream! {
        let _lease = lease;
        let (mut out, start) = MessageStream::start(&model, 0);
        yield sse(start);
        let mut parser = SseParser::new();
        let mut calls: BTreeMap<u64, PartialCall> = BTreeMap::new();
        let mut finish = None;
        let mut counts = (0, 0);
        'read: loop {
            let chunk = match upstream.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "The engine's stream broke off");
                    reporting.failed();
                    yield sse(answer::failure("the model's engine stopped mid-stream"));
                    break 'read;
                }
                None => break 'read,
            };
            for item in parser.feed(&chunk) {
                let SseItem::Event { data, .. } = item else { continue };
                let Ok(event) = serde_json::from_str::<Value>(&data) else { continue };
                if let Some(message) = event.pointer("/error/message").and_then(Value::as_str) {
                    reporting.failed();
                    yield sse(answer::failure(message));
                    break 'read;
                }
                if let Some(usage) = event.get("usage").and_then(usage_counts) {
                    counts = usage;
                }
                let Some(choice) = event.pointer("/choices/0") else { continue };
                if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str) {
                    for e in out.text(text) {
                        yield sse(e);
                    }
                }
                for piece in choice.pointer("/delta/tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let call = calls.entry(piece.get("index").and_then(Value::as_u64).unwrap_or(0)).or_default();
                    if let Some(name) = piece.pointer("/function/name").and_then(Value::as_str) {
                        call.name.push_str(name);
                    }
                    if let Some(args) = piece.pointer("/function/arguments").and_then(Value::as_str) {
                        call.arguments.push_str(args);
                    }
                }
                if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                    finish = Some(finish_reason(Some(reason)));
                    for (_, call) in std::mem::take(&mut calls) {
                        let call = ParsedToolCall { name: call.name, arguments: arguments(&call.arguments) };
                        for e in out.tool_call(call) {
                            yield sse(e);
                        }
                    }
                }
            }
        }
        if let Some(finish) = finish {
            for e in out.finish_counted(&finish, counts.0, counts.1) {
                yield sse(e);
            }
        } else if !reporting.read().failed {
            reporting.failed();
            yield sse(answer::failure("the model's engine ended the answer without finishing it"));
        }
        reporting.tokens(counts.0, counts.1);
        yield Ok(usage_comment(counts.0, counts.1));
    };
    tallied(Sse::new(body).into_response(), tally)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn openai_endings_and_calls_read_as_anthropic_needs_them() {
        assert_eq!(finish_reason(Some("length")), FinishReason::MaxTokens);
        assert_eq!(finish_reason(Some("tool_calls")), FinishReason::EndOfTurn);
        let call = json!({"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}});
        let parsed = parsed_call(&call).unwrap_or_else(|| panic!("a call"));
        assert_eq!((parsed.name.as_str(), &parsed.arguments), ("get_weather", &json!({"city": "Paris"})));
        assert_eq!(arguments("{broken"), json!("{broken"));
    }
}
