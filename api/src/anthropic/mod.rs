//! The Anthropic Messages API: `POST /v1/messages` and
//! `POST /v1/messages/count_tokens`, and the same under `/<model>/v1/`.
//!
//! A Messages request is translated into a chat request and runs through
//! the OpenAI chat path — validation, wake, local or forwarded generation —
//! and its answer is translated back, whole or as Anthropic's stream of
//! named events. Every error, including a refused key, uses Anthropic's
//! shape `{"type":"error","error":{"type","message"}}`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::catalog::CatalogEntry;
use crate::engine_errors::from_engine;
use crate::gate::Caller;
use crate::http::shape::anthropic_error;
use crate::inference::Route;
use crate::openai::choices;
use crate::state::AppState;
use greenthread_protocol::anthropic::translate;
use greenthread_protocol::anthropic::translate::StreamTranslator;
use greenthread_protocol::anthropic::types::{CountTokensRequest, MessagesRequest};
use greenthread_protocol::error::{ApiError, ApiResult};
use greenthread_protocol::openai::types::ChatCompletionRequest;
use greenthread_protocol::openai::validate;
use greenthread_protocol::sse::{SseItem, SseParser};

/// Largest answer read back whole from the chat path (a non-streamed message).
const MAX_ANSWER_BYTES: usize = 64 << 20;

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
            let (caller, req, _) = parts::<MessagesRequest>(&state, caller, body)?;
            let model = state.inference.model_for_body(&caller, req.model.as_deref())?;
            run(&state, &caller, model, req).await
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
            let (caller, req, _) = parts::<MessagesRequest>(&state, caller, body)?;
            let model = state.inference.model_for_path(&caller, &name)?;
            run(&state, &caller, model, req).await
        }
        .await,
    )
}

async fn run(state: &AppState, caller: &Caller, model: Arc<CatalogEntry>, req: MessagesRequest) -> ApiResult<Response> {
    let name = model.spec.name.to_string();
    let stream = req.stream == Some(true);
    let body = translate::to_openai(&req, &name)?;
    let raw = Bytes::from(serde_json::to_vec(&body).map_err(|e| ApiError::Internal(e.to_string()))?);
    let chat: ChatCompletionRequest = serde_json::from_value(body).map_err(|e| ApiError::Internal(e.to_string()))?;
    let answer = crate::openai::chat::complete(state, caller, model, chat, raw).await?;
    translate_answer(answer, &name, stream).await
}

/// The chat path's answer as a Messages answer.
async fn translate_answer(answer: Response, model: &str, stream: bool) -> ApiResult<Response> {
    let status = answer.status();
    if !status.is_success() {
        let retry_after = answer.headers().get(header::RETRY_AFTER).cloned();
        let bytes = axum::body::to_bytes(answer.into_body(), MAX_ANSWER_BYTES)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let error: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let message = error["error"]["message"].as_str().unwrap_or("the request failed");
        let mut response = (status, Json(translate::error_body(status.as_u16(), message))).into_response();
        if let Some(v) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(response);
    }
    if !stream {
        let bytes = axum::body::to_bytes(answer.into_body(), MAX_ANSWER_BYTES)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let completion: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::Internal(e.to_string()))?;
        return Ok(Json(translate::message_from_openai(&completion, model)).into_response());
    }
    let mut chunks = answer.into_body().into_data_stream();
    let mut translator = StreamTranslator::new(model);
    let events = async_stream::stream! {
        let mut parser = SseParser::new();
        while let Some(chunk) = chunks.next().await {
            let Ok(chunk) = chunk else {
                let error = translate::error_body(500, "the answer broke off");
                yield Ok::<_, Infallible>(Event::default().event("error").data(error.to_string()));
                break;
            };
            for item in parser.feed(&chunk) {
                let SseItem::Event { data, .. } = item else { continue };
                for (name, payload) in translator.on_data(&data) {
                    yield Ok(Event::default().event(name).data(payload.to_string()));
                }
            }
        }
    };
    Ok(Sse::new(events).into_response())
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
            count(&state, model, req, body).await
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
            count(&state, model, req, body).await
        }
        .await,
    )
}

/// Counts the prompt's tokens with the model's own tokenizer and chat
/// template (the model is woken for it, like for any request).
async fn count(state: &AppState, model: Arc<CatalogEntry>, req: CountTokensRequest, raw: Bytes) -> ApiResult<Response> {
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
        .dispatch(&model, Route::CountTokens, raw, move |instance, lease| async move {
            let messages = valid.messages;
            let prompt =
                choices::prepare(&instance, move |m| m.chat_prompt(&messages, None).map_err(from_engine)).await?;
            drop(lease);
            Ok(Json(json!({"input_tokens": prompt.len()})).into_response())
        })
        .await
}
