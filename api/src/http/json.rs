//! Reading JSON request bodies: over-size bodies become 413, malformed JSON
//! and wrongly typed fields become 400 naming the field.

use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::state::AppState;

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

/// Parses `bytes`, naming the path of a field with the wrong type.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        if let Some(field) = message.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
            let param = if path == "." { field.to_owned() } else { format!("{path}.{field}") };
            ApiError::invalid(param.clone(), format!("Missing required parameter: '{param}'."))
        } else if inner.is_syntax() || inner.is_eof() || path == "." {
            ApiError::BadJson(message)
        } else {
            ApiError::invalid(path.clone(), format!("Invalid value for '{path}': {inner}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Req {
        model: String,
        temperature: Option<f32>,
    }

    #[test]
    fn syntax_errors_are_bad_json() {
        assert!(matches!(parse::<Req>(b"{\"model\": "), Err(ApiError::BadJson(_))));
        assert!(matches!(parse::<Req>(b"not json"), Err(ApiError::BadJson(_))));
    }

    #[test]
    fn a_wrongly_typed_field_is_named() {
        match parse::<Req>(br#"{"model": "m", "temperature": "hot"}"#) {
            Err(ApiError::InvalidParam { param, .. }) => assert_eq!(param, "temperature"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_field_is_named() {
        match parse::<Req>(br#"{"temperature": 1}"#) {
            Err(ApiError::InvalidParam { param, .. }) => assert_eq!(param, "model"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        assert!(parse::<Req>(br#"{"model": "m", "store": true, "metadata": {"a": 1}}"#).is_ok());
    }
}
