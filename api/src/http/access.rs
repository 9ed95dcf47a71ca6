//! The access log: one line per request at INFO, written when its answer
//! has gone out (a stream's last event) or the client went away — request
//! id, method, route, status, model, key, tokens, wake wait and latency.
//! `--log-format json` makes it one JSON object per line. What only the
//! handlers know (the model, the key, the token counts) they note on the
//! request's [`AccessSlot`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;
use tokio::time::Instant;
use tracing::Instrument;

use super::stamp::RequestId;

/// The response header saying how long the request waited for its model,
/// in milliseconds: a sleeping model's wake, else about zero.
pub const WAKE_WAIT_HEADER: &str = "x-greenthread-wake-wait-ms";

/// How long a request waited for its model: put by the dispatcher on the
/// response it returns, and read when the answer is done. Shared, because
/// a stream that waits for a wake sends its head before the wait is over.
#[derive(Debug, Clone, Default)]
pub struct WakeWait(Arc<AtomicU64>);

impl WakeWait {
    pub fn of(wait: Duration) -> Self {
        let wake = Self::default();
        wake.set(wait);
        wake
    }

    pub fn set(&self, wait: Duration) {
        self.0.store(u64::try_from(wait.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn get(&self) -> Duration {
        Duration::from_micros(self.0.load(Ordering::Relaxed))
    }
}

/// What the handlers learn about a request, for its access line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessNote {
    pub model: Option<String>,
    /// The key's hint (never the secret).
    pub key: Option<String>,
    /// Input and output tokens, where the request was metered.
    pub tokens: Option<(u32, u32)>,
    /// `ok`, `error` or `aborted`, where the request was metered.
    pub outcome: Option<&'static str>,
}

/// Where a request's handlers note what its access line says.
#[derive(Debug, Clone, Default)]
pub struct AccessSlot(Arc<Mutex<AccessNote>>);

impl AccessSlot {
    pub fn note(&self, f: impl FnOnce(&mut AccessNote)) {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }

    fn read(&self) -> AccessNote {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// One HTTP exchange, told once its answer has gone out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exchange<'a> {
    pub method: &'a str,
    /// The route's pattern (`/v1/chat/completions`, `/{model}/v1/models`).
    pub route: &'a str,
    pub status: u16,
    /// From the request's arrival to its answer's last byte.
    pub seconds: f64,
}

/// Told of every exchange (the per-route HTTP metrics).
pub type ExchangeObserver = Arc<dyn Fn(&Exchange<'_>) + Send + Sync>;

/// What the middleware itself knows of a request.
struct Line {
    id: String,
    method: String,
    route: String,
    status: u16,
    /// Read when the line is written: a stream that waited for a wake
    /// learns the wait after its head went out.
    wake: Option<WakeWait>,
    started: Instant,
    slot: AccessSlot,
    observer: Option<ExchangeObserver>,
    /// The request's span: it ends with the line, when the answer has gone out.
    span: tracing::Span,
}

impl Line {
    fn write(&self, complete: bool) {
        if let Some(observer) = &self.observer {
            let seconds = self.started.elapsed().as_secs_f64();
            observer(&Exchange { method: &self.method, route: &self.route, status: self.status, seconds });
        }
        let note = self.slot.read();
        let (input_tokens, output_tokens) = note.tokens.unzip();
        let outcome = note.outcome.unwrap_or(if complete { "sent" } else { "aborted" });
        let wake_ms = self.wake.as_ref().map(|w| format!("{:.1}", w.get().as_secs_f64() * 1000.0));
        self.span.record("model", note.model.as_deref());
        self.span.record("outcome", outcome);
        tracing::info!(
            target: "greenthread::access",
            request_id = %self.id,
            method = %self.method,
            route = %self.route,
            status = self.status,
            model = note.model.as_deref(),
            key = note.key.as_deref(),
            input_tokens,
            output_tokens,
            wake_ms = wake_ms.as_deref(),
            latency_ms = format!("{:.1}", self.started.elapsed().as_secs_f64() * 1000.0),
            outcome,
            "request"
        );
    }
}

/// Logs each request once its answer has gone out (or been abandoned).
pub async fn access_log(
    State(observer): State<Option<ExchangeObserver>>,
    mut request: Request,
    next: Next,
) -> Response {
    let slot = AccessSlot::default();
    request.extensions_mut().insert(slot.clone());
    let started = Instant::now();
    let id = request.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
    let method = request.method().to_string();
    // The route's pattern, never the client's own path (which could carry
    // anything into the log).
    let route = request.extensions().get::<MatchedPath>().map_or("(no route)", MatchedPath::as_str).to_owned();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        route = %route,
        status = tracing::field::Empty,
        model = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    let response = next.run(request).instrument(span.clone()).await;
    span.record("status", i64::from(response.status().as_u16()));
    let wake = response.extensions().get::<WakeWait>().cloned();
    let line = Line { id, method, route, status: response.status().as_u16(), wake, started, slot, observer, span };
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream();
    let logged = async_stream::stream! {
        // Written when the stream is dropped: after its last chunk, or when
        // the client went away. Declared first, so dropped last: the answer's
        // own body (and the usage meter in it) goes first and notes its counts.
        let mut guard = LineGuard { line, complete: false };
        let mut chunks = body;
        while let Some(chunk) = chunks.next().await {
            let failed = chunk.is_err();
            yield chunk;
            if failed {
                break;
            }
        }
        drop(chunks);
        guard.complete = true;
    };
    Response::from_parts(parts, Body::from_stream(logged))
}

/// Writes the line when the answer's stream ends, however it ends.
struct LineGuard {
    line: Line,
    complete: bool,
}

impl Drop for LineGuard {
    fn drop(&mut self) {
        self.line.write(self.complete);
    }
}
