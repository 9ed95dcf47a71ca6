//! `POST /v1/embeddings`: sentence vectors from an embedding model, as
//! floats or base64 little-endian `f32`, with the tokens read as usage.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use greenthread_node_runtime::{EmbeddingInput, ModelInstance};
use greenthread_scheduler::Lease;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::CatalogEntry;
use crate::engine_errors::from_engine;
use crate::gate::Caller;
use crate::http::json::ApiJson;
use crate::inference::Route;
use crate::state::AppState;
use greenthread_protocol::error::{ApiError, ApiResult};

/// OpenAI's limit on inputs per request.
const MAX_INPUTS: usize = 2048;
/// Inputs run through the model at once: bounds the padded batch's memory.
const BATCH: usize = 32;

/// `input`: one text, many texts, one token list or many.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum InputField {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingRequest {
    pub model: Option<String>,
    pub input: InputField,
    pub encoding_format: Option<String>,
    pub dimensions: Option<u32>,
}

/// A validated request.
#[derive(Debug, Clone)]
pub struct ValidEmbedding {
    inputs: Vec<EmbeddingInput>,
    base64: bool,
    dimensions: Option<u32>,
}

#[derive(Debug, Serialize)]
struct EmbeddingOut {
    object: &'static str,
    index: usize,
    embedding: Value,
}

#[derive(Debug, Serialize)]
struct UsageOut {
    prompt_tokens: usize,
    total_tokens: usize,
}

#[derive(Debug, Serialize)]
struct EmbeddingList {
    object: &'static str,
    data: Vec<EmbeddingOut>,
    model: String,
    usage: UsageOut,
}

/// Validates an embeddings request.
///
/// # Errors
/// [`ApiError::InvalidParam`] naming the field.
pub fn validate(req: EmbeddingRequest) -> ApiResult<ValidEmbedding> {
    let inputs: Vec<EmbeddingInput> = match req.input {
        InputField::Text(t) => vec![EmbeddingInput::Text(t)],
        InputField::Texts(ts) => ts.into_iter().map(EmbeddingInput::Text).collect(),
        InputField::Tokens(ids) => vec![EmbeddingInput::Tokens(ids)],
        InputField::TokenLists(lists) => lists.into_iter().map(EmbeddingInput::Tokens).collect(),
    };
    if inputs.is_empty() || inputs.len() > MAX_INPUTS {
        return Err(ApiError::invalid("input", format!("input must hold 1 to {MAX_INPUTS} items")));
    }
    let empty = |i: &EmbeddingInput| match i {
        EmbeddingInput::Text(t) => t.is_empty(),
        EmbeddingInput::Tokens(ids) => ids.is_empty(),
    };
    if let Some(at) = inputs.iter().position(empty) {
        return Err(ApiError::invalid("input", format!("input[{at}] is empty")));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "encoding_format",
                format!("unknown encoding_format {other:?}; expected float or base64"),
            ));
        }
    };
    Ok(ValidEmbedding { inputs, base64, dimensions: req.dimensions })
}

pub async fn unified(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req, raw): ApiJson<EmbeddingRequest>,
) -> ApiResult<Response> {
    let model = state.inference.model_for_body(&caller, req.model.as_deref())?;
    run(&state, &caller, model, req, raw).await
}

pub async fn per_model(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req, raw): ApiJson<EmbeddingRequest>,
) -> ApiResult<Response> {
    let model = state.inference.model_for_path(&caller, &name)?;
    run(&state, &caller, model, req, raw).await
}

async fn run(
    state: &AppState,
    caller: &Caller,
    model: Arc<CatalogEntry>,
    req: EmbeddingRequest,
    raw: bytes::Bytes,
) -> ApiResult<Response> {
    state
        .inference
        .metered(caller, &model, async {
            let valid = validate(req)?;
            let name = model.spec.name.to_string();
            state
                .inference
                .dispatch(caller, &model, Route::Embeddings, raw, move |instance, lease| {
                    embed(instance, lease, valid, name)
                })
                .await
        })
        .await
}

/// Embeds on a model in this process.
async fn embed(
    instance: Arc<dyn ModelInstance>,
    lease: Option<Lease>,
    valid: ValidEmbedding,
    name: String,
) -> ApiResult<Response> {
    let Some(dimensions) = instance.info().embedding_dimensions else {
        return Err(ApiError::invalid(
            "model",
            format!("model {name} is a chat model; it serves /v1/chat/completions, not /v1/embeddings"),
        ));
    };
    if let Some(asked) = valid.dimensions.filter(|&d| d as usize != dimensions) {
        return Err(ApiError::invalid(
            "dimensions",
            format!("model {name} makes {dimensions}-dimensional vectors; dimensions {asked} is not available"),
        ));
    }
    let ValidEmbedding { inputs, base64, .. } = valid;
    let (vectors, tokens) = tokio::task::spawn_blocking(move || -> ApiResult<(Vec<Vec<f32>>, usize)> {
        let ids = inputs
            .into_iter()
            .map(|i| match instance.embedding_tokens(i) {
                Err(e @ greenthread_node_runtime::Error::TokenOutOfRange(_)) => {
                    Err(ApiError::invalid("input", e.to_string()))
                }
                other => other.map_err(from_engine),
            })
            .collect::<ApiResult<Vec<_>>>()?;
        let tokens = ids.iter().map(Vec::len).sum();
        let mut vectors = Vec::with_capacity(ids.len());
        for batch in ids.chunks(BATCH) {
            vectors.extend(instance.embed(batch).map_err(from_engine)?);
        }
        Ok((vectors, tokens))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("embedding failed: {e}")))??;
    drop(lease);
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| EmbeddingOut { object: "embedding", index, embedding: encode(&v, base64) })
        .collect();
    let body = EmbeddingList {
        object: "list",
        data,
        model: name,
        usage: UsageOut { prompt_tokens: tokens, total_tokens: tokens },
    };
    Ok(crate::inference::metering::counted(Json(body).into_response(), u32::try_from(tokens).unwrap_or(u32::MAX), 0))
}

/// A vector as JSON floats, or as base64 of its little-endian `f32` bytes.
fn encode(vector: &[f32], base64: bool) -> Value {
    if base64 {
        let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
        Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
    } else {
        Value::from(vector.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenthread_protocol::json::parse;

    fn param(body: &str) -> String {
        match validate(parse(body.as_bytes()).unwrap()) {
            Err(ApiError::InvalidParam { param, .. }) => param,
            other => panic!("expected a parameter error, got {other:?}"),
        }
    }

    #[test]
    fn every_input_form_is_read() {
        for (body, n) in [
            (r#"{"input": "a"}"#, 1),
            (r#"{"input": ["a", "b"]}"#, 2),
            (r#"{"input": [1, 2]}"#, 1),
            (r#"{"input": [[1], [2, 3]]}"#, 2),
        ] {
            assert_eq!(validate(parse(body.as_bytes()).unwrap()).unwrap().inputs.len(), n, "{body}");
        }
    }

    #[test]
    fn empty_inputs_and_unknown_formats_are_refused_by_field() {
        assert_eq!(param(r#"{"input": ""}"#), "input");
        assert_eq!(param(r#"{"input": []}"#), "input");
        assert_eq!(param(r#"{"input": ["a", ""]}"#), "input");
        assert_eq!(param(r#"{"input": "a", "encoding_format": "int8"}"#), "encoding_format");
    }

    #[test]
    fn base64_is_little_endian_f32() {
        let Value::String(b) = encode(&[1.0, -2.5], true) else { panic!() };
        let bytes = base64::engine::general_purpose::STANDARD.decode(b).unwrap();
        assert_eq!(bytes, [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat());
    }
}
