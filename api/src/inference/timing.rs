//! Timing an answer as its client sees it, for the request metrics: the
//! first piece of generated output of a stream (time to first token), the
//! gaps between the pieces after it (inter-token latency), the last byte
//! (end to end), the wait for the model, and the tokens counted. Read from
//! the answer's own events, so an answer from a node or an external engine
//! is timed exactly like one generated here.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::header;
use axum::response::Response;
use greenthread_protocol::sse::{SseItem, SseParser};
use serde_json::Value;
use tokio::time::Instant;

use crate::http::access::AccessSlot;
use crate::metrics::Metrics;
use crate::metrics::requests::Finished;
use crate::usage::WakeWait;

/// `response`, timed from `started` into `metrics` under `model`.
pub(super) fn timed(
    response: Response,
    metrics: Arc<Metrics>,
    model: String,
    started: Instant,
    access: AccessSlot,
) -> Response {
    let streaming =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let wake = response.extensions().get::<WakeWait>().cloned().unwrap_or_default();
    let watch = Watch { metrics, model, started, wake, access, parser: streaming.then(SseParser::new), last: None };
    // Dropped after the body, so the usage meter inside it has noted the counts.
    crate::http::held::hold_until_sent(response, watch)
}

struct Watch {
    metrics: Arc<Metrics>,
    model: String,
    started: Instant,
    wake: WakeWait,
    access: AccessSlot,
    /// Reads a stream's events; `None` for a whole answer.
    parser: Option<SseParser>,
    /// When the last piece of output went out.
    last: Option<Instant>,
}

impl crate::http::held::Rider for Watch {
    fn saw(&mut self, chunk: &Bytes) {
        let Some(parser) = &mut self.parser else { return };
        let pieces = parser
            .feed(chunk)
            .iter()
            .filter(|item| matches!(item, SseItem::Event { data, .. } if carries_output(data)))
            .count();
        if pieces == 0 {
            return;
        }
        let now = Instant::now();
        let requests = &self.metrics.requests;
        match self.last {
            None => {
                let seconds = (now - self.started).as_secs_f64();
                requests.first_token(&self.model, seconds);
                self.metrics.recent.first_token(&self.model, chrono::Utc::now(), seconds * 1000.0);
            }
            Some(last) => requests.token_gap(&self.model, (now - last).as_secs_f64()),
        }
        self.last = Some(now);
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut tokens = None;
        self.access.note(|n| tokens = n.tokens);
        let done =
            Finished { queue_s: self.wake.get().as_secs_f64(), e2e_s: self.started.elapsed().as_secs_f64(), tokens };
        self.metrics.requests.finished(&self.model, &done);
    }
}

/// Whether a stream event carries generated output, in any of the APIs'
/// stream shapes: a chat or completion chunk with content, text or tool
/// calls, Anthropic's `content_block_delta`, the Responses API's deltas.
fn carries_output(data: &str) -> bool {
    if data == "[DONE]" {
        return false;
    }
    let Ok(event) = serde_json::from_str::<Value>(data) else { return false };
    let filled = |v: Option<&Value>| v.and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    if let Some(choices) = event.get("choices").and_then(Value::as_array) {
        return choices.iter().any(|choice| {
            let delta = choice.get("delta");
            filled(choice.get("text"))
                || delta.is_some_and(|d| filled(d.get("content")) || d.get("tool_calls").is_some_and(|t| !t.is_null()))
        });
    }
    matches!(
        event.get("type").and_then(Value::as_str),
        Some("content_block_delta" | "response.output_text.delta" | "response.function_call_arguments.delta")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_told_from_the_events_around_it_in_every_api() {
        let output = [
            r#"{"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0}]}}]}"#,
            r#"{"choices":[{"index":0,"text":"Hi"}]}"#,
            r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"Hi"}}"#,
            r#"{"type":"response.output_text.delta","delta":"Hi"}"#,
        ];
        let not_output = [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":3}}"#,
            r#"{"type":"message_start","message":{}}"#,
            r#"{"type":"response.created"}"#,
            "[DONE]",
            "not json",
        ];
        assert!(output.iter().all(|d| carries_output(d)));
        assert!(!not_output.iter().any(|d| carries_output(d)));
    }
}
