//! The gateway's errors and their one mapping to HTTP: OpenAI's error shape
//! `{"error":{"message","type","param","code"}}` with the status the SDKs expect.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("We could not parse the JSON body of your request: {0}")]
    BadJson(String),
    #[error("{message}")]
    InvalidParam { param: String, message: String },
    #[error("{message}")]
    Unsupported { param: &'static str, message: String },
    #[error("The model `{}` does not exist or you do not have access to it.", shown(.0))]
    ModelNotFound(String),
    #[error("{0}")]
    ContextLengthExceeded(String),
    /// A stored object (a response) that does not exist for the caller.
    #[error("No {kind} found with id '{}'.", shown(id))]
    NotFound { kind: &'static str, id: String },
    #[error("The request body is larger than the limit of {limit} bytes.")]
    PayloadTooLarge { limit: usize },
    #[error("The request body did not arrive in time; send it without pauses.")]
    RequestTimeout,
    #[error("Unknown request URL: {} {}.", shown(method), shown(path))]
    RouteNotFound { method: String, path: String },
    #[error("Method {} is not allowed for {}.", shown(method), shown(path))]
    MethodNotAllowed { method: String, path: String },
    #[error("The model is not available right now: {0}")]
    Unavailable(String),
    #[error("The model `{model}` is waking up and was not ready within {waited_s} s; retry shortly.")]
    Waking { model: String, waited_s: u64, retry_after_s: u64 },
    /// The model has as many requests running and waiting as it may:
    /// refused at once rather than queued without end.
    #[error(
        "The model{} is overloaded: {in_flight} requests are running or waiting, its limit; retry shortly.",
        .model.as_deref().map(|m| format!(" `{}`", shown(m))).unwrap_or_default()
    )]
    Overloaded { model: Option<String>, in_flight: u64, retry_after_s: u64 },
    /// The key has as many requests in flight as its limit allows.
    #[error("This API key already has {limit} requests in flight, its limit; retry when one has finished.")]
    TooManyInFlight { limit: u32 },
    #[error("The model `{model}` cannot be served: {reason}")]
    ModelFailed { model: String, reason: String },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("No service answers at {0}: the domain is not verified yet.")]
    UnknownHost(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("Rate limit reached for this API key; retry in {} s.", .0.reset.as_secs_f64().ceil())]
    RateLimited(greenthread_core::rate_limit::RateStatus),
    /// An external engine refused the request (4xx: the request's fault, passed
    /// on with the engine's own words) or failed on it (5xx: a bad gateway).
    #[error("The model's engine answered {status}: {}", shown(message))]
    Engine { status: u16, message: String },
    /// A fault of the server; the detail is logged, never sent.
    #[error("The server had an error while processing your request.")]
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Longest piece of a client's input an error message repeats, in characters.
const MAX_ECHO_CHARS: usize = 128;

/// `text` as an error message repeats it: whole when short, else its start
/// and how long it was, so a 100 kB name is not sent back to its sender.
pub fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        None => text.into(),
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], text.len()).into(),
    }
}

impl ApiError {
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidParam { param: param.into(), message: message.into() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnknownHost(_) => StatusCode::NOT_FOUND,
            Self::RateLimited(_) | Self::TooManyInFlight { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied(_) => StatusCode::FORBIDDEN,
            Self::BadJson(_)
            | Self::InvalidParam { .. }
            | Self::Unsupported { .. }
            | Self::ContextLengthExceeded(_) => StatusCode::BAD_REQUEST,
            Self::ModelNotFound(_) | Self::RouteNotFound { .. } | Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unavailable(_) | Self::Waking { .. } | Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::ModelFailed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Engine { status, .. } => match StatusCode::from_u16(*status) {
                Ok(s) if s.is_client_error() => s,
                _ => StatusCode::BAD_GATEWAY,
            },
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Internal(_) | Self::ModelFailed { .. } => "server_error",
            Self::Engine { status, .. } if *status >= 500 || *status < 400 => "server_error",
            Self::Unavailable(_) | Self::Waking { .. } => "service_unavailable_error",
            Self::RateLimited(_) | Self::TooManyInFlight { .. } => "requests",
            Self::Overloaded { .. } => "overloaded_error",
            _ => "invalid_request_error",
        }
    }

    /// OpenAI's `param`.
    pub fn param(&self) -> Option<&str> {
        match self {
            Self::InvalidParam { param, .. } => Some(param),
            Self::Unsupported { param, .. } => Some(param),
            Self::ModelNotFound(_) => Some("model"),
            Self::ContextLengthExceeded(_) => Some("messages"),
            _ => None,
        }
    }

    /// OpenAI's `code`: stable and machine-readable.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::BadJson(_) => Some("invalid_json"),
            Self::Unauthenticated(_) => Some("invalid_api_key"),
            Self::UnknownHost(_) => Some("unknown_host"),
            Self::PermissionDenied(_) => Some("insufficient_permissions"),
            Self::RateLimited(_) => Some("rate_limit_exceeded"),
            Self::InvalidParam { .. } => Some("invalid_value"),
            Self::Unsupported { .. } => Some("unsupported_parameter"),
            Self::ModelNotFound(_) => Some("model_not_found"),
            Self::NotFound { .. } => Some("not_found"),
            Self::ContextLengthExceeded(_) => Some("context_length_exceeded"),
            Self::PayloadTooLarge { .. } => Some("request_too_large"),
            Self::RequestTimeout => Some("request_timeout"),
            Self::RouteNotFound { .. } => Some("unknown_url"),
            Self::MethodNotAllowed { .. } => Some("method_not_allowed"),
            Self::Unavailable(_) => Some("model_unavailable"),
            Self::Waking { .. } => Some("model_waking"),
            Self::Overloaded { .. } => Some("model_overloaded"),
            Self::TooManyInFlight { .. } => Some("concurrency_limit_exceeded"),
            Self::ModelFailed { .. } => Some("model_failed"),
            Self::Engine { .. } => Some("engine_error"),
            Self::Internal(_) => None,
        }
    }

    /// The `x-ratelimit-*` headers of a rate-limited request.
    pub fn rate_headers(&self) -> Vec<(&'static str, HeaderValue)> {
        let Self::RateLimited(s) = self else { return Vec::new() };
        standing_headers(s)
    }

    /// Seconds a client should wait before trying again (`Retry-After`),
    /// for the refusals a retry can cure.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Waking { retry_after_s, .. } | Self::Overloaded { retry_after_s, .. } => Some(*retry_after_s),
            Self::TooManyInFlight { .. } => Some(1),
            Self::RateLimited(s) => Some(s.reset.as_secs_f64().ceil().max(1.0) as u64),
            _ => None,
        }
    }

    /// Anthropic's status for the error: 529 where the server is overloaded.
    pub fn anthropic_status(&self) -> u16 {
        match self {
            Self::Overloaded { .. } => 529,
            e => e.status().as_u16(),
        }
    }

    /// The JSON body, also used for errors inside an SSE stream.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.to_string(), "type": self.kind(), "param": self.param(), "code": self.code()}})
    }
}

/// A key's standing in OpenAI's `x-ratelimit-*` headers: on a 429, and on
/// every answer a limited key was admitted to.
pub fn standing_headers(s: &greenthread_core::rate_limit::RateStatus) -> Vec<(&'static str, HeaderValue)> {
    let reset = format!("{:.3}s", s.reset.as_secs_f64());
    let mut out = Vec::new();
    let mut add = |name, value: Option<u32>| {
        if let Some(v) = value {
            out.push((name, HeaderValue::from(v)));
        }
    };
    add("x-ratelimit-limit-requests", s.limit_requests);
    add("x-ratelimit-remaining-requests", s.remaining_requests);
    add("x-ratelimit-limit-tokens", s.limit_tokens);
    add("x-ratelimit-remaining-tokens", s.remaining_tokens);
    if let Ok(v) = HeaderValue::from_str(&reset) {
        if s.limit_requests.is_some() {
            out.push(("x-ratelimit-reset-requests", v.clone()));
        }
        if s.limit_tokens.is_some() {
            out.push(("x-ratelimit-reset-tokens", v));
        }
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(detail) = &self {
            tracing::error!(error = %detail, "Request failed");
        }
        let mut response = (self.status(), Json(self.body())).into_response();
        let headers = response.headers_mut();
        for (name, value) in self.rate_headers() {
            headers.insert(name, value);
        }
        // The SDKs retry 429s and 503s and honour Retry-After.
        if let Some(seconds) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        // A model that failed to load will not succeed on a retry.
        if let Self::ModelFailed { .. } = &self {
            headers.insert("x-should-retry", HeaderValue::from_static("false"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_the_openai_shape() {
        let errors = [
            ApiError::BadJson("x".into()),
            ApiError::invalid("temperature", "too hot"),
            ApiError::ModelNotFound("m".into()),
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::Internal("secret detail".into()),
        ];
        for e in errors {
            let body = e.body();
            let err = &body["error"];
            assert!(err["message"].is_string() && err["type"].is_string(), "{body}");
            assert!(err.get("param").is_some() && err.get("code").is_some(), "{body}");
        }
    }

    #[test]
    fn long_names_are_not_echoed_whole() {
        let name = "m".repeat(100_000);
        let message = ApiError::ModelNotFound(name).to_string();
        assert!(message.len() < 300, "{} bytes", message.len());
        assert!(message.contains("(100000 bytes)"), "{message}");
        assert_eq!(shown("qwen"), "qwen");
        let accented = "é".repeat(200);
        assert!(shown(&accented).starts_with(&"é".repeat(MAX_ECHO_CHARS)), "cut on a character boundary");
    }

    #[test]
    fn internal_details_never_reach_the_client() {
        let body = ApiError::Internal("disk /secret full".into()).body();
        assert!(!body.to_string().contains("secret"));
    }

    #[test]
    fn overload_is_a_retryable_503_and_anthropics_529() {
        let e = ApiError::Overloaded { model: Some("m".into()), in_flight: 3, retry_after_s: 1 };
        assert_eq!((e.status(), e.anthropic_status()), (StatusCode::SERVICE_UNAVAILABLE, 529));
        assert_eq!((e.kind(), e.code()), ("overloaded_error", Some("model_overloaded")));
        let response = e.into_response();
        assert_eq!(response.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()), Some(&b"1"[..]));
        let key = ApiError::TooManyInFlight { limit: 2 };
        assert_eq!((key.status(), key.code()), (StatusCode::TOO_MANY_REQUESTS, Some("concurrency_limit_exceeded")));
    }

    #[test]
    fn statuses_follow_what_the_sdks_expect() {
        assert_eq!(ApiError::BadJson(String::new()).status(), StatusCode::BAD_REQUEST);
        assert_eq!(ApiError::ModelNotFound(String::new()).status(), StatusCode::NOT_FOUND);
        assert_eq!(ApiError::PayloadTooLarge { limit: 0 }.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(ApiError::Internal(String::new()).status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
