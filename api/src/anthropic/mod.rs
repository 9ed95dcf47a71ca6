//! The Anthropic Messages API: `POST /v1/messages` and
//! `POST /v1/messages/count_tokens`, and the same under `/<model>/v1/`.
//!
//! A Messages request is translated into a chat request and validated like
//! one; it runs where its model is (a gateway forwards the client's own
//! Messages request to the node), and its answer is built from the typed
//! generation events, whole or as Anthropic's stream of named events
//! ([`generate`]). Every error, including a refused key, uses Anthropic's
//! shape `{"type":"error","error":{"type","message"}}`.

mod generate;

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::catalog::CatalogEntry;
use crate::engine_errors::from_engine;
use crate::gate::Caller;
use crate::http::shape::anthropic_error;
use crate::inference::Route;
use crate::openai::choices;
use crate::state::AppState;
use greenthread_protocol::anthropic::translate;
use greenthread_protocol::anthropic::types::{CountTokensRequest, MessagesRequest};
use greenthread_protocol::error::{ApiError, ApiResult};
use greenthread_protocol::openai::types::ChatCompletionRequest;
use greenthread_protocol::openai::validate;

fn body_error(rejection: &BytesRejection, limit: usize) -> ApiError {
    crate::http::intake::body_rejection(rejection, limit)
}

fn respond(result: ApiResult<Response>) -> Response {
    result.unwrap_or_else(anthropic_error)
}

/// The request's caller and body, or why there are none.
fn parts<T: serde::de::DeserializeOwned>(
    state: &AppState,
    caller: Result<Caller, ApiError>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(Caller, T, Bytes)> {
    let caller = caller?;
    let body = body.map_err(|r| body_error(&r, state.limits.max_request_bytes))?;
    let req = greenthread_protocol::json::parse(&body)?;
    Ok((caller, req, body))
}

/// `POST /v1/messages`: the model comes from the body.
pub async fn unified(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(
        async {
            let (caller, req, raw) = parts::<MessagesRequest>(&state, caller, body)?;
            let model = state.inference.model_for_body(&caller, req.model.as_deref())?;
            run(&state, &caller, model, req, raw).await
        }
        .await,
    )
}

/// `POST /<model>/v1/messages`: the URL decides the model.
pub async fn per_model(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(
        async {
            let (caller, req, raw) = parts::<MessagesRequest>(&state, caller, body)?;
            let model = state.inference.model_for_path(&caller, &name)?;
            run(&state, &caller, model, req, raw).await
        }
        .await,
    )
}

async fn run(
    state: &AppState,
    caller: &Caller,
    model: Arc<CatalogEntry>,
    req: MessagesRequest,
    raw: Bytes,
) -> ApiResult<Response> {
    let name = model.spec.name.to_string();
    let body = translate::to_openai(&req, &name)?;
    let chat: ChatCompletionRequest = serde_json::from_value(body).map_err(|e| ApiError::Internal(e.to_string()))?;
    state
        .inference
        .metered(caller, &model, async {
            let chat = validate::chat(chat, &state.limits.rules())?;
            state
                .inference
                .dispatch(caller, &model, Route::Messages, raw, move |instance, lease| {
                    generate::messages(instance, lease, chat, name)
                })
                .await
        })
        .await
}

/// `POST /v1/messages/count_tokens`.
pub async fn count_tokens(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(
        async {
            let (caller, req, body) = parts::<CountTokensRequest>(&state, caller, body)?;
            let model = state.inference.model_for_body(&caller, req.model.as_deref())?;
            count(&state, &caller, model, req, body).await
        }
        .await,
    )
}

/// `POST /<model>/v1/messages/count_tokens`.
pub async fn count_tokens_per_model(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(
        async {
            let (caller, req, body) = parts::<CountTokensRequest>(&state, caller, body)?;
            let model = state.inference.model_for_path(&caller, &name)?;
            count(&state, &caller, model, req, body).await
        }
        .await,
    )
}

/// Counts the prompt's tokens with the model's own tokenizer and chat
/// template (the model is woken for it, like for any request).
async fn count(
    state: &AppState,
    caller: &Caller,
    model: Arc<CatalogEntry>,
    req: CountTokensRequest,
    raw: Bytes,
) -> ApiResult<Response> {
    let name = model.spec.name.to_string();
    let as_message = MessagesRequest {
        model: Some(name.clone()),
        max_tokens: Some(1),
        messages: req.messages,
        system: req.system,
        stop_sequences: None,
        temperature: None,
        top_p: None,
        top_k: None,
        stream: None,
        tools: req.tools,
        tool_choice: None,
    };
    let body = translate::to_openai(&as_message, &name)?;
    let chat: ChatCompletionRequest = serde_json::from_value(body).map_err(|e| ApiError::Internal(e.to_string()))?;
    let valid = validate::chat(chat, &state.limits.rules())?;
    state
        .inference
        .dispatch(caller, &model, Route::CountTokens, raw, move |instance, lease| async move {
            let messages = valid.messages;
            let prompt =
                choices::prepare(&instance, move |m| m.chat_prompt(&messages, None).map_err(from_engine)).await?;
            drop(lease);
            Ok(Json(json!({"input_tokens": prompt.len()})).into_response())
        })
        .await
}
