//! Request bodies, for every route: a `Content-Length` past the limit is
//! refused before a byte of the body is read, and the whole body must
//! arrive within [`BODY_READ_TIMEOUT`] of the headers, so a client that
//! sends its headers and then a byte at a time cannot hold a connection and
//! a task. The body is still read by the handler, after the key is checked.
//! Refusals come in the shape of the API the path belongs to.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};

use greenthread_protocol::error::ApiError;

/// Longest a request body may take to arrive, from the end of its headers:
/// 8 MiB (the default limit) at about 1 Mbit/s.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// What a request body may be.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    /// From the end of the headers to the end of the body.
    pub timeout: Duration,
}

impl BodyLimits {
    /// `max_bytes` within [`BODY_READ_TIMEOUT`].
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes, timeout: BODY_READ_TIMEOUT }
    }
}

/// Refuses a declared oversized body at once and gives the body a deadline.
pub async fn read_body(State(limits): State<BodyLimits>, request: Request, next: Next) -> Response {
    let max_bytes = limits.max_bytes;
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_bytes as u64) {
        let (parts, body) = request.into_parts();
        // Answered now; what the client goes on sending is read and thrown
        // away for a while (as a web server's lingering close does), so a
        // client that writes its whole body before reading sees the 413
        // rather than a reset connection.
        tokio::spawn(discard(body, limits.timeout.min(LINGER)));
        return refuse(parts.uri.path(), ApiError::PayloadTooLarge { limit: max_bytes });
    }
    let request = request
        .map(|body| Body::new(DeadlineBody { inner: body, deadline: Box::pin(tokio::time::sleep(limits.timeout)) }));
    next.run(request).await
}

/// Longest an oversized body is read and thrown away after its refusal.
const LINGER: Duration = Duration::from_secs(10);

/// Reads `body` to its end, or for `linger` at most, keeping none of it.
async fn discard(body: Body, linger: Duration) {
    use http_body_util::BodyExt;
    let mut body = body;
    let _ = tokio::time::timeout(linger, async move { while let Some(Ok(_)) = body.frame().await {} }).await;
}

/// A body that fails once its deadline passes.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

/// The error a body past its deadline fails with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a handler answers when its body could not be read: too large,
/// too slow, or not readable.
pub fn body_rejection(rejection: &BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge { limit };
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(s) = source {
        if s.is::<BodyTimedOut>() {
            return ApiError::RequestTimeout;
        }
        source = s.source();
    }
    ApiError::BadJson(rejection.body_text())
}

/// `e` in the shape of `path`'s API: GraphQL's, Anthropic's or OpenAI's.
fn refuse(path: &str, e: ApiError) -> Response {
    if path.starts_with("/graphql") {
        let body =
            serde_json::json!({"errors": [{"message": e.to_string(), "extensions": {"code": "PAYLOAD_TOO_LARGE"}}]});
        return (e.status(), axum::Json(body)).into_response();
    }
    super::shape::for_path(path, e)
}
