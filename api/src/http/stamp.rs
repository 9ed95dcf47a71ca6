//! The headers every answer carries, as the SDKs read them: the request's
//! id (`x-request-id`, and `request-id` on Anthropic's routes), the time
//! the server spent (`openai-processing-ms`), and a limited key's standing
//! (`x-ratelimit-*`, and `anthropic-ratelimit-*` on Anthropic's routes) on
//! answers that were admitted, not only on its 429s.

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use greenthread_core::rate_limit::RateStatus;
use greenthread_protocol::error::standing_headers;
use tokio::time::Instant;

use super::shape::is_messages_path;

/// The header that names a request on every hop: client → gateway →
/// scheduler → node → engine.
pub const REQUEST_ID: &str = "x-request-id";

/// Longest request id taken from a client; a longer or odd one is replaced.
const MAX_ID_LEN: usize = 128;

/// The id of the request being answered (in the request's extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Where the gate leaves the key's standing for the answer's headers.
#[derive(Debug, Clone, Default)]
pub struct RateSlot(Arc<Mutex<Option<RateStatus>>>);

impl RateSlot {
    pub fn set(&self, status: RateStatus) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(status);
    }

    fn take(&self) -> Option<RateStatus> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// The client's own id when it is a sane one (visible ASCII, no spaces,
/// at most [`MAX_ID_LEN`]), else a new `req_…`.
pub fn request_id(headers: &HeaderMap) -> String {
    let given = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic()));
    given.map_or_else(|| format!("req_{}", greenthread_protocol::ids::random_suffix()), str::to_owned)
}

/// Stamps every answer with its request id, processing time and, for a
/// limited key, its rate-limit standing.
pub async fn stamp(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(request.headers());
    let anthropic = is_messages_path(request.uri().path());
    let slot = RateSlot::default();
    request.extensions_mut().insert(RequestId(id.clone()));
    request.extensions_mut().insert(slot.clone());
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        if anthropic {
            headers.insert("request-id", value.clone());
        }
        headers.insert(REQUEST_ID, value);
    }
    // Until the head is sent: a stream's time to its first byte.
    headers.insert("openai-processing-ms", HeaderValue::from(started.elapsed().as_millis() as u64));
    if let Some(status) = slot.take() {
        for (name, value) in rate_headers(&status, anthropic) {
            headers.entry(name).or_insert(value);
        }
    }
    response
}

/// A key's standing in OpenAI's header names, and on Anthropic's routes in
/// Anthropic's too.
fn rate_headers(s: &RateStatus, anthropic: bool) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if anthropic {
        // Anthropic says when the window resets as an RFC 3339 time.
        let reset = (chrono::Utc::now() + s.reset).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let kinds =
            [("requests", s.limit_requests, s.remaining_requests), ("tokens", s.limit_tokens, s.remaining_tokens)];
        for (kind, limit, remaining) in kinds {
            let Some(limit) = limit else { continue };
            let values = [
                ("limit", Some(limit.to_string())),
                ("remaining", remaining.map(|r| r.to_string())),
                ("reset", Some(reset.clone())),
            ];
            for (what, value) in values {
                let name = HeaderName::try_from(format!("anthropic-ratelimit-{kind}-{what}"));
                if let (Ok(name), Some(Ok(value))) = (name, value.map(HeaderValue::try_from)) {
                    out.push((name, value));
                }
            }
        }
    }
    out.extend(standing_headers(s).into_iter().map(|(name, value)| (HeaderName::from_static(name), value)));
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn with_id(id: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_str(id).unwrap_or_else(|e| panic!("{e}")));
        h
    }

    #[test]
    fn a_sane_client_id_is_kept_and_anything_else_replaced() {
        assert_eq!(request_id(&with_id("trace-42:abc")), "trace-42:abc");
        for odd in ["has space", &"x".repeat(MAX_ID_LEN + 1), ""] {
            let id = request_id(&with_id(odd));
            assert!(id.starts_with("req_") && id.len() == 28, "{odd:?} → {id}");
        }
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }

    #[test]
    fn the_standing_is_written_in_each_ecosystems_names() {
        let status = RateStatus {
            limit_requests: Some(30),
            remaining_requests: Some(29),
            limit_tokens: None,
            remaining_tokens: None,
            reset: Duration::from_millis(1500),
        };
        let openai: Vec<String> = rate_headers(&status, false).iter().map(|(n, v)| format!("{n}={v:?}")).collect();
        assert_eq!(
            openai,
            [
                "x-ratelimit-limit-requests=\"30\"",
                "x-ratelimit-remaining-requests=\"29\"",
                "x-ratelimit-reset-requests=\"1.500s\""
            ]
        );
        let anthropic = rate_headers(&status, true);
        let names: Vec<&str> = anthropic.iter().map(|(n, _)| n.as_str()).collect();
        assert!(
            names.contains(&"anthropic-ratelimit-requests-remaining") && names.contains(&"x-ratelimit-limit-requests")
        );
        let reset = anthropic.iter().find(|(n, _)| n == "anthropic-ratelimit-requests-reset").map(|(_, v)| v.clone());
        let reset = reset.and_then(|v| v.to_str().ok().map(str::to_owned)).unwrap_or_default();
        assert!(chrono::DateTime::parse_from_rfc3339(&reset).is_ok(), "{reset}");
    }
}
