//! `POST /v1/rerank` (also `/v2/rerank`), in the shape Cohere, Jina, vLLM
//! and LiteLLM share, and vLLM's `POST /v1/score`: documents scored
//! against a query by a cross-encoder, or by the cosine similarity of an
//! embedding model's vectors.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use greenthread_node_runtime::ModelInstance;
use greenthread_scheduler::Lease;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::catalog::CatalogEntry;
use crate::engine_errors::from_engine;
use crate::gate::Caller;
use crate::http::json::ApiJson;
use crate::inference::Route;
use crate::state::AppState;
use greenthread_protocol::error::{ApiError, ApiResult};

/// Most documents one request may score (Cohere's limit).
const MAX_DOCUMENTS: usize = 1000;

/// A document: its text, or an object with a `text` field (kept whole for
/// `return_documents`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DocumentField {
    Text(String),
    Object(serde_json::Map<String, Value>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct RerankRequest {
    pub model: Option<String>,
    pub query: String,
    pub documents: Vec<DocumentField>,
    pub top_n: Option<usize>,
    /// Whether each result carries its document; default true (as Jina
    /// and vLLM answer).
    pub return_documents: Option<bool>,
}

/// A validated rerank: the texts to score and how to answer.
#[derive(Debug, Clone)]
pub struct ValidRerank {
    query: String,
    texts: Vec<String>,
    /// The documents as sent, for `return_documents`.
    documents: Option<Vec<Value>>,
    top_n: usize,
}

/// Validates a rerank request.
///
/// # Errors
/// [`ApiError::InvalidParam`] naming the field.
pub fn validate(req: RerankRequest) -> ApiResult<ValidRerank> {
    if req.query.trim().is_empty() {
        return Err(ApiError::invalid("query", "query is empty"));
    }
    if req.documents.is_empty() || req.documents.len() > MAX_DOCUMENTS {
        return Err(ApiError::invalid("documents", format!("documents must hold 1 to {MAX_DOCUMENTS} items")));
    }
    let mut texts = Vec::with_capacity(req.documents.len());
    let mut documents = Vec::with_capacity(req.documents.len());
    for (at, document) in req.documents.into_iter().enumerate() {
        let (text, whole) = match document {
            DocumentField::Text(text) => (text.clone(), json!({ "text": text })),
            DocumentField::Object(object) => match object.get("text").and_then(Value::as_str) {
                Some(text) => (text.to_owned(), Value::Object(object)),
                None => {
                    return Err(ApiError::invalid(
                        "documents",
                        format!("documents[{at}] is an object without a string `text`"),
                    ));
                }
            },
        };
        if text.trim().is_empty() {
            return Err(ApiError::invalid("documents", format!("documents[{at}] is empty")));
        }
        texts.push(text);
        documents.push(whole);
    }
    let top_n = match req.top_n {
        Some(0) => return Err(ApiError::invalid("top_n", "top_n must be at least 1")),
        Some(n) => n.min(texts.len()),
        None => texts.len(),
    };
    let documents = req.return_documents.unwrap_or(true).then_some(documents);
    Ok(ValidRerank { query: req.query, texts, documents, top_n })
}

/// `text_1` and `text_2` of a score request: one text or many.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Texts {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct ScoreRequest {
    pub model: Option<String>,
    pub text_1: Texts,
    pub text_2: Texts,
}

/// A validated score request: one query against its texts (vLLM also
/// pairs lists one to one; this pairs one `text_1` with every `text_2`).
///
/// # Errors
/// [`ApiError::InvalidParam`] naming the field.
pub fn validate_score(req: ScoreRequest) -> ApiResult<(String, Vec<String>)> {
    let query = match req.text_1 {
        Texts::One(text) => text,
        Texts::Many(mut texts) if texts.len() == 1 => texts.remove(0),
        Texts::Many(_) => {
            return Err(ApiError::invalid("text_1", "text_1 must be one text (it is scored against each of text_2)"));
        }
    };
    if query.trim().is_empty() {
        return Err(ApiError::invalid("text_1", "text_1 is empty"));
    }
    let texts = match req.text_2 {
        Texts::One(text) => vec![text],
        Texts::Many(texts) => texts,
    };
    if texts.is_empty() || texts.len() > MAX_DOCUMENTS {
        return Err(ApiError::invalid("text_2", format!("text_2 must hold 1 to {MAX_DOCUMENTS} texts")));
    }
    if let Some(at) = texts.iter().position(|t| t.trim().is_empty()) {
        return Err(ApiError::invalid("text_2", format!("text_2[{at}] is empty")));
    }
    Ok((query, texts))
}

#[derive(Debug, Serialize)]
struct RerankResult {
    index: usize,
    relevance_score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<Value>,
}

pub async fn unified(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req, raw): ApiJson<RerankRequest>,
) -> ApiResult<Response> {
    let model = state.inference.model_for_body(&caller, req.model.as_deref())?;
    run(&state, &caller, model, req, raw).await
}

pub async fn per_model(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req, raw): ApiJson<RerankRequest>,
) -> ApiResult<Response> {
    let model = state.inference.model_for_path(&caller, &name)?;
    run(&state, &caller, model, req, raw).await
}

async fn run(
    state: &AppState,
    caller: &Caller,
    model: Arc<CatalogEntry>,
    req: RerankRequest,
    raw: bytes::Bytes,
) -> ApiResult<Response> {
    state
        .inference
        .metered(caller, &model, async {
            let valid = validate(req)?;
            let name = model.spec.name.to_string();
            let id = caller.request_id.clone().unwrap_or_default();
            state
                .inference
                .dispatch(caller, &model, Route::Rerank, raw, move |instance, lease| async move {
                    let texts = valid.texts.clone();
                    let documents = texts.len();
                    let (scores, tokens) = score(instance, lease, valid.query.clone(), texts).await?;
                    let mut ranked: Vec<usize> = (0..scores.len()).collect();
                    ranked.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
                    let results: Vec<RerankResult> = ranked
                        .into_iter()
                        .take(valid.top_n)
                        .map(|index| RerankResult {
                            index,
                            relevance_score: scores[index],
                            document: valid.documents.as_ref().map(|d| d[index].clone()),
                        })
                        .collect();
                    let body = json!({
                        "id": format!("rerank-{id}"),
                        "model": name,
                        "results": results,
                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                        "meta": {"billed_units": {"search_units": 1}},
                    });
                    Ok(counted(body, tokens, documents))
                })
                .await
        })
        .await
}

pub async fn score_unified(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req, raw): ApiJson<ScoreRequest>,
) -> ApiResult<Response> {
    let model = state.inference.model_for_body(&caller, req.model.as_deref())?;
    run_score(&state, &caller, model, req, raw).await
}

pub async fn score_per_model(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req, raw): ApiJson<ScoreRequest>,
) -> ApiResult<Response> {
    let model = state.inference.model_for_path(&caller, &name)?;
    run_score(&state, &caller, model, req, raw).await
}

async fn run_score(
    state: &AppState,
    caller: &Caller,
    model: Arc<CatalogEntry>,
    req: ScoreRequest,
    raw: bytes::Bytes,
) -> ApiResult<Response> {
    state
        .inference
        .metered(caller, &model, async {
            let (query, texts) = validate_score(req)?;
            let name = model.spec.name.to_string();
            let id = caller.request_id.clone().unwrap_or_default();
            state
                .inference
                .dispatch(caller, &model, Route::Score, raw, move |instance, lease| async move {
                    let documents = texts.len();
                    let (scores, tokens) = score(instance, lease, query, texts).await?;
                    let data: Vec<Value> = scores
                        .into_iter()
                        .enumerate()
                        .map(|(index, score)| json!({"index": index, "object": "score", "score": score}))
                        .collect();
                    let body = json!({
                        "id": format!("score-{id}"),
                        "object": "list",
                        "created": chrono::Utc::now().timestamp(),
                        "model": name,
                        "data": data,
                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0},
                    });
                    Ok(counted(body, tokens, documents))
                })
                .await
        })
        .await
}

/// Scores `texts` against `query` on a model in this process.
async fn score(
    instance: Arc<dyn ModelInstance>,
    lease: Option<Lease>,
    query: String,
    texts: Vec<String>,
) -> ApiResult<(Vec<f32>, usize)> {
    let scored = tokio::task::spawn_blocking(move || instance.rerank(&query, &texts))
        .await
        .map_err(|e| ApiError::Internal(format!("reranking failed: {e}")))?
        .map_err(from_engine)?;
    drop(lease);
    Ok((scored.scores, scored.tokens))
}

/// The answer, metered in tokens read and documents ranked.
fn counted(body: Value, tokens: usize, documents: usize) -> Response {
    let response = crate::usage::Units::documents(documents).on(Json(body).into_response());
    crate::inference::metering::counted(response, u32::try_from(tokens).unwrap_or(u32::MAX), 0)
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
    fn documents_may_be_texts_or_objects_with_text() {
        let v = validate(parse(br#"{"query": "q", "documents": ["a", {"text": "b", "id": 7}], "top_n": 5}"#).unwrap())
            .unwrap();
        assert_eq!(v.texts, ["a", "b"]);
        assert_eq!(v.top_n, 2, "top_n past the documents is all of them");
        assert_eq!(v.documents.unwrap()[1], json!({"text": "b", "id": 7}), "objects come back whole");
        let v = validate(parse(br#"{"query": "q", "documents": ["a"], "return_documents": false}"#).unwrap()).unwrap();
        assert!(v.documents.is_none());
    }

    #[test]
    fn bad_fields_are_refused_by_name() {
        assert_eq!(param(r#"{"query": " ", "documents": ["a"]}"#), "query");
        assert_eq!(param(r#"{"query": "q", "documents": []}"#), "documents");
        assert_eq!(param(r#"{"query": "q", "documents": ["a", ""]}"#), "documents");
        assert_eq!(param(r#"{"query": "q", "documents": [{"title": "no text"}]}"#), "documents");
        assert_eq!(param(r#"{"query": "q", "documents": ["a"], "top_n": 0}"#), "top_n");
    }

    #[test]
    fn a_score_is_one_text_against_many() {
        let (q, texts) = validate_score(parse(br#"{"text_1": "q", "text_2": ["a", "b"]}"#).unwrap()).unwrap();
        assert_eq!((q.as_str(), texts.len()), ("q", 2));
        let err = validate_score(parse(br#"{"text_1": ["q", "r"], "text_2": ["a", "b"]}"#).unwrap()).unwrap_err();
        assert!(matches!(err, ApiError::InvalidParam { ref param, .. } if param == "text_1"), "{err:?}");
    }
}
