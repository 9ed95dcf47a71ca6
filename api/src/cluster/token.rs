//! The cluster token: the shared secret on every call between a scheduler
//! and its nodes (`Authorization: Bearer …`).

use std::fmt;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Shortest token accepted: 128 bits as hex would be 32 characters; 24
/// random characters of any alphabet is still far beyond guessing.
pub const MIN_TOKEN_LEN: usize = 24;

/// The secret. Never printed: `Debug` and `Display` show a redaction.
#[derive(Clone)]
pub struct ClusterToken(String);

impl ClusterToken {
    /// # Errors
    /// When the token is shorter than [`MIN_TOKEN_LEN`] or holds whitespace.
    pub fn new(raw: &str) -> Result<Self, String> {
        if raw.len() < MIN_TOKEN_LEN {
            return Err(format!("the cluster token must be at least {MIN_TOKEN_LEN} characters long"));
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the cluster token must not contain whitespace".into());
        }
        Ok(Self(raw.to_owned()))
    }

    /// The `Authorization` header value to send.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Whether an `Authorization` header value carries this token, compared
    /// in constant time so the comparison leaks nothing about the secret.
    pub fn accepts(&self, header: Option<&str>) -> bool {
        let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else { return false };
        let (a, b) = (given.as_bytes(), self.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterToken(<redacted>)")
    }
}

/// Middleware: refuses requests without the cluster token with 401.
pub async fn require_token(State(token): State<ClusterToken>, request: Request, next: Next) -> Response {
    let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if token.accepts(given) {
        next.run(request).await
    } else {
        let body = serde_json::json!({"error": {
            "message": "This endpoint is internal to the cluster and needs the cluster token.",
            "type": "authentication_error", "param": null, "code": "invalid_cluster_token"}});
        (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_is_accepted() {
        let t = ClusterToken::new("0123456789abcdef01234567").unwrap();
        assert!(t.accepts(Some("Bearer 0123456789abcdef01234567")));
        assert!(!t.accepts(Some("Bearer 0123456789abcdef01234568")));
        assert!(!t.accepts(Some("Bearer 0123456789abcdef0123456")));
        assert!(!t.accepts(Some("0123456789abcdef01234567")));
        assert!(!t.accepts(None));
    }

    #[test]
    fn weak_tokens_are_refused_and_tokens_never_print() {
        assert!(ClusterToken::new("short").is_err());
        assert!(ClusterToken::new("has a space in it 0123456789").is_err());
        let t = ClusterToken::new("0123456789abcdef01234567").unwrap();
        assert!(!format!("{t:?}").contains("0123"));
    }
}
