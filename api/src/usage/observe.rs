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

use super::{Tally, Units, UsageEvent, UsageMeter, UsageStatus};
use crate::http::access::{AccessSlot, WakeWait};

/// Largest whole (non-streamed) answer whose usage is read back.
const MAX_WHOLE: usize = 4 << 20;

/// Who and what one request is metered as.
#[derive(Clone)]
pub struct UsageContext {
    pub meter: UsageMeter,
    pub key_id: Option<Uuid>,
    pub project_id: Uuid,
    pub model: String,
    pub started: Instant,
    /// The request's access line, told the counts and the outcome.
    pub access: AccessSlot,
    pub request_id: Option<String>,
}

impl UsageContext {
    /// Records a request that failed before any answer (bad input, no model).
    pub fn record_failure(&self) {
        self.access.note(|n| n.outcome = Some(UsageStatus::Error.as_str()));
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
            request_id: self.request_id.clone(),
            units: Units::default(),
        });
    }
}

/// Where a tracked answer's token counts come from.
enum Reading {
    /// Reported as typed values by the handler that generated the answer here.
    Typed(Tally),
    /// A streamed answer from a node: its events and closing `: usage` comment.
    Stream(SseParser),
    /// A whole answer from a node: its bytes, read once complete.
    Whole(Vec<u8>),
}

/// Follows the bytes of an answer; records when dropped.
struct Tracker {
    ctx: UsageContext,
    wake: WakeWait,
    reading: Reading,
    ok: bool,
    /// Counts read from a node's stream so far.
    usage: Option<(u32, u32)>,
    /// What the answer's head said it counts besides tokens.
    units: Units,
    error_seen: bool,
    finished: bool,
}

/// An answer's `usage`, under OpenAI's names or Anthropic's (a Messages
/// answer forwarded from a node).
fn usage_of(v: &Value) -> Option<(u32, u32)> {
    let u = v.get("usage").filter(|u| u.is_object())?;
    let tokens = |k: &str| u.get(k).and_then(Value::as_u64).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let input = tokens("prompt_tokens").or_else(|| tokens("input_tokens"))?;
    Some((input, tokens("completion_tokens").or_else(|| tokens("output_tokens")).unwrap_or(0)))
}

impl Tracker {
    fn observe(&mut self, chunk: &Bytes) {
        let parser = match &mut self.reading {
            Reading::Typed(_) => return,
            Reading::Whole(pending) => {
                if pending.len() + chunk.len() <= MAX_WHOLE {
                    pending.extend_from_slice(chunk);
                }
                return;
            }
            Reading::Stream(parser) => parser,
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

    /// The whole answer went out: record it as complete.
    fn finish(mut self) {
        self.finished = true;
    }

    /// The answer's token counts, from wherever this answer keeps them.
    fn counts(&mut self) -> Option<(u32, u32)> {
        match &self.reading {
            Reading::Typed(tally) => {
                let counted = tally.read();
                self.error_seen |= counted.failed;
                counted.tokens
            }
            Reading::Stream(_) => self.usage,
            Reading::Whole(pending) if self.finished => {
                serde_json::from_slice::<Value>(pending).ok().as_ref().and_then(usage_of)
            }
            Reading::Whole(_) => None,
        }
    }
}

/// Records when dropped: after the last byte, or when the client went away.
impl Drop for Tracker {
    fn drop(&mut self) {
        let counts = self.counts();
        let status = if !self.ok || self.error_seen {
            UsageStatus::Error
        } else if !self.finished {
            UsageStatus::Aborted
        } else {
            UsageStatus::Ok
        };
        let (input_tokens, output_tokens) = counts.unwrap_or((0, 0));
        self.ctx.access.note(|n| {
            n.tokens = counts;
            n.outcome = Some(status.as_str());
        });
        self.ctx.meter.record(UsageEvent {
            at: self.ctx.meter.now(),
            key_id: self.ctx.key_id,
            project_id: self.ctx.project_id,
            model: std::mem::take(&mut self.ctx.model),
            input_tokens,
            output_tokens,
            latency: self.ctx.started.elapsed(),
            wake_wait: self.wake.get(),
            status,
            request_id: self.ctx.request_id.take(),
            units: self.units,
        });
    }
}

/// `response`, metered: its usage is recorded once its body has gone out
/// or been dropped.
pub fn observe(ctx: UsageContext, mut response: Response) -> Response {
    let units = Units::take(&mut response);
    let streamed =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let reading = match response.extensions().get::<Tally>() {
        Some(tally) => Reading::Typed(tally.clone()),
        None if streamed => Reading::Stream(SseParser::new()),
        None => Reading::Whole(Vec::new()),
    };
    let wake = response.extensions().get::<WakeWait>().cloned().unwrap_or_default();
    let ok = response.status().is_success();
    let (parts, body) = response.into_parts();
    let mut tracker = Tracker { ctx, wake, reading, ok, usage: None, units, error_seen: false, finished: false };
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::response::IntoResponse;
    use greenthread_store::entities::usage_record;
    use greenthread_store::{Store, SystemClock};
    use sea_orm::{EntityTrait, QueryOrder};

    use super::*;

    /// Sends `response` through the meter and returns the tokens it recorded.
    async fn metered_tokens(meter: &UsageMeter, store: &Store, response: Response) -> (i32, i32, String) {
        let ctx = UsageContext {
            meter: meter.clone(),
            key_id: None,
            project_id: Uuid::now_v7(),
            model: "m".into(),
            started: Instant::now(),
            access: AccessSlot::default(),
            request_id: Some("req_test".into()),
        };
        let body = observe(ctx, response).into_body();
        axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
        meter.flush().await;
        let rows = usage_record::Entity::find()
            .order_by_desc(usage_record::Column::Id)
            .all(store.db())
            .await
            .unwrap_or_default();
        let last = rows.first().map(|r| (r.input_tokens, r.output_tokens, r.status.clone()));
        last.unwrap_or((-1, -1, String::new()))
    }

    #[tokio::test]
    async fn a_tally_is_read_instead_of_the_answer_and_forwarded_answers_are_read() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(&Store::sqlite_url(dir.path()), Arc::new(SystemClock)).await;
        let store = store.unwrap_or_else(|e| panic!("{e}"));
        let meter = UsageMeter::start(store.clone(), Duration::from_secs(60));
        let body = r#"{"usage":{"prompt_tokens":100,"completion_tokens":200}}"#;

        let tally = Tally::default();
        tally.tokens(3, 4);
        let mut local = body.into_response();
        local.extensions_mut().insert(tally);
        assert_eq!(metered_tokens(&meter, &store, local).await, (3, 4, "ok".into()));

        let forwarded = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
        assert_eq!(metered_tokens(&meter, &store, forwarded).await, (100, 200, "ok".into()));

        let failed = Tally::default();
        failed.tokens(5, 1);
        failed.failed();
        let mut broken = "data: {}\n\n".into_response();
        broken.extensions_mut().insert(failed);
        assert_eq!(metered_tokens(&meter, &store, broken).await, (5, 1, "error".into()));
    }
}
