//! Reading JSON request bodies: malformed JSON and wrongly typed fields
//! become 400s that name the field.

use serde::de::DeserializeOwned;

use crate::error::ApiError;

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
