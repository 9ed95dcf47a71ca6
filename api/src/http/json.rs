//! Reading JSON request bodies: over-size bodies become 413; the rest is
//! `greenthread_protocol::json::parse`.

use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::state::AppState;
use greenthread_protocol::error::ApiError;
use greenthread_protocol::json::parse;

/// A JSON body, with errors in the OpenAI shape, and its bytes as sent (a
/// gateway forwards them to the node unchanged).
pub struct ApiJson<T>(pub T, pub Bytes);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| super::intake::body_rejection(&rejection, state.limits.max_request_bytes))?;
        parse(&bytes).map(|value| ApiJson(value, bytes))
    }
}
