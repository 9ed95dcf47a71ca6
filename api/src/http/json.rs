//! Reading JSON request bodies: over-size bodies become 413; the rest is
//! `greenthread_protocol::json::parse`.

use axum::extract::{FromRef, FromRequest, Request};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::limits::Limits;
use greenthread_protocol::error::ApiError;
use greenthread_protocol::json::parse;

/// A JSON body, with errors in the OpenAI shape, and its bytes as sent (a
/// gateway forwards them to the node unchanged).
pub struct ApiJson<T>(pub T, pub Bytes);

/// Any server state that carries the request [`Limits`] can read one.
impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    Limits: FromRef<S>,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let max_bytes = Limits::from_ref(state).max_request_bytes;
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| super::intake::body_rejection(&rejection, max_bytes))?;
        parse(&bytes).map(|value| ApiJson(value, bytes))
    }
}
