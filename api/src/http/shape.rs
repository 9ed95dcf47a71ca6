//! Which ecosystem's error shape an answer takes: Anthropic's on the
//! Messages routes, OpenAI's elsewhere, whichever handler (or fallback,
//! or body limit) refuses the request.

use axum::Json;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use greenthread_protocol::anthropic::translate;
use greenthread_protocol::error::ApiError;

/// Whether `path` is one of the Messages API's routes, whose errors take
/// Anthropic's shape (whichever handler, or fallback, answers).
pub fn is_messages_path(path: &str) -> bool {
    path.ends_with("/v1/messages") || path.ends_with("/v1/messages/count_tokens")
}

/// An [`ApiError`] in Anthropic's shape, with the same status and headers.
pub fn anthropic_error(e: ApiError) -> Response {
    if let ApiError::Internal(detail) = &e {
        tracing::error!(error = %detail, "Request failed");
    }
    let status = axum::http::StatusCode::from_u16(e.anthropic_status()).unwrap_or_else(|_| e.status());
    let mut response = (status, Json(translate::error_body(status.as_u16(), &e.to_string()))).into_response();
    if let Some(seconds) = e.retry_after() {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    for (name, value) in e.rate_headers() {
        response.headers_mut().insert(name, value);
    }
    response
}

/// `e` in the error shape of the API `path` belongs to.
pub fn for_path(path: &str, e: ApiError) -> Response {
    if is_messages_path(path) { anthropic_error(e) } else { e.into_response() }
}
