//! Watching an answer go out, to meter it when it is done or abandoned.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use futures_util::StreamExt;
use greenthread_protocol::sse::{SseItem, SseParser};
use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

use super::{UsageEvent, UsageMeter, UsageStatus};

/// Largest whole (non-streamed) answer whose usage is read back.
const MAX_WHOLE: usize = 4 << 20;

/// How long a request waited for its model: set by the dispatcher on the
/// response it returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct WakeWait(pub Duration);

/// Who and what one request is metered as.
#[derive(Clone)]
pub struct UsageContext {
    pub meter: UsageMeter,
    pub key_id: Option<Uuid>,
    pub project_id: Uuid,
    pub model: String,
    pub started: Instant,
}

impl UsageContext {
    /// Records a request that failed before any answer (bad input, no model).
    pub fn record_failure(&self) {
        self.meter.record(UsageEvent {
            at: self.meter.now(),
            key_id: self.key_id,
            project_id: self.project_id,
            model: self.model.clone(),
            input_tokens: 0,
            output_tokens: 0,
            latency: self.started.elapsed(),
            wake_wait: Duration::ZERO,
            status: UsageStatus::Error,
        });
    }
}

/// Follows the bytes of an answer; records when dropped.
struct Tracker {
    ctx: UsageContext,
    wake: Duration,
    /// How a streamed answer is read; `None` for a whole answer.
    sse: Option<SseParser>,
    ok: bool,
    /// A whole answer's bytes.
    pending: Vec<u8>,
    usage: Option<(u32, u32)>,
    error_seen: bool,
    finished: bool,
}

fn usage_of(v: &Value) -> Option<(u32, u32)> {
    let u = v.get("usage").filter(|u| u.is_object())?;
    let tokens = |k: &str| u.get(k).and_then(Value::as_u64).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    Some((tokens("prompt_tokens")?, tokens("completion_tokens").unwrap_or(0)))
}

impl Tracker {
    fn observe(&mut self, chunk: &Bytes) {
        let Some(parser) = &mut self.sse else {
            if self.pending.len() + chunk.len() <= MAX_WHOLE {
                self.pending.extend_from_slice(chunk);
            }
            return;
        };
        for item in parser.feed(chunk) {
            match item {
                SseItem::Comment(comment) => {
                    if let Some(json) = comment.strip_prefix("usage ")
                        && let Ok(v) = serde_json::from_str::<Value>(json)
                    {
                        self.usage = usage_of(&serde_json::json!({ "usage": v })).or(self.usage);
                    }
                }
                SseItem::Event { data, .. } => {
                    let Ok(v) = serde_json::from_str::<Value>(&data) else { continue };
                    if v.get("error").is_some() {
                        self.error_seen = true;
                    }
                    if let Some(u) = usage_of(&v) {
                        self.usage = Some(u);
                    }
                }
            }
        }
    }
}

impl Tracker {
    /// The whole answer went out: record it as complete.
    fn finish(mut self) {
        self.finished = true;
    }
}

/// Records when dropped: after the last byte, or when the client went away.
impl Drop for Tracker {
    fn drop(&mut self) {
        if self.sse.is_none() && self.finished {
            self.usage = serde_json::from_slice::<Value>(&self.pending).ok().as_ref().and_then(usage_of);
        }
        let status = if !self.ok || self.error_seen {
            UsageStatus::Error
        } else if !self.finished {
            UsageStatus::Aborted
        } else {
            UsageStatus::Ok
        };
        let (input_tokens, output_tokens) = self.usage.unwrap_or((0, 0));
        self.ctx.meter.record(UsageEvent {
            at: self.ctx.meter.now(),
            key_id: self.ctx.key_id,
            project_id: self.ctx.project_id,
            model: std::mem::take(&mut self.ctx.model),
            input_tokens,
            output_tokens,
            latency: self.ctx.started.elapsed(),
            wake_wait: self.wake,
            status,
        });
    }
}

/// `response`, metered: its usage is recorded once its body has gone out
/// or been dropped.
pub fn observe(ctx: UsageContext, response: Response) -> Response {
    let sse = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
        .then(SseParser::new);
    let wake = response.extensions().get::<WakeWait>().copied().unwrap_or_default().0;
    let ok = response.status().is_success();
    let (parts, body) = response.into_parts();
    let mut tracker =
        Tracker { ctx, wake, sse, ok, pending: Vec::new(), usage: None, error_seen: false, finished: false };
    let mut chunks = body.into_data_stream();
    let stream = async_stream::stream! {
        while let Some(chunk) = chunks.next().await {
            if let Ok(c) = &chunk {
                tracker.observe(c);
            }
            yield chunk;
        }
        tracker.finish();
    };
    Response::from_parts(parts, Body::from_stream(stream))
}
