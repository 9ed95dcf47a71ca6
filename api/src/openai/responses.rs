//! The Responses API: `POST /v1/responses` (and `/<model>/v1/responses`),
//! `GET` and `DELETE /v1/responses/{id}`, and
//! `GET /v1/responses/{id}/input_items`.
//!
//! A request is read as a chat request and validated like one. Where the
//! server has a database, a continuation (`previous_response_id`) is
//! expanded here into the whole conversation, and the answer is kept as it
//! passes ([`crate::inference::archive`]); the request then runs where its
//! model is, the node building the `response` from its own generation
//! ([`super::respond`]). Metered and rate limited like chat.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::catalog::CatalogEntry;
use crate::gate::Caller;
use crate::http::json::ApiJson;
use crate::inference::Route;
use crate::inference::archive::ResponseArchive;
use crate::state::AppState;
use greenthread_protocol::error::{ApiError, ApiResult};
use greenthread_protocol::openai::types::ChatCompletionRequest;
use greenthread_protocol::openai::validate;
use greenthread_protocol::responses::types::ResponsesRequest;
use greenthread_protocol::responses::{input, translate};

/// `POST /v1/responses`: the model comes from the body.
pub async fn unified(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req, raw): ApiJson<ResponsesRequest>,
) -> ApiResult<Response> {
    let model = state.inference.model_for_body(&caller, req.model.as_deref())?;
    create(&state, caller, model, req, raw).await
}

/// `POST /<model>/v1/responses`: the URL decides the model.
pub async fn per_model(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req, raw): ApiJson<ResponsesRequest>,
) -> ApiResult<Response> {
    let model = state.inference.model_for_path(&caller, &name)?;
    create(&state, caller, model, req, raw).await
}

async fn create(
    state: &AppState,
    caller: Caller,
    model: Arc<CatalogEntry>,
    req: ResponsesRequest,
    raw: Bytes,
) -> ApiResult<Response> {
    let name = model.spec.name.to_string();
    let archive = state.inference.responses.clone();
    // Without a database (a node), the gateway has already expanded the conversation.
    let (mut items, continued) = match (&req.previous_response_id, &archive) {
        (Some(id), Some(archive)) => (archive.conversation(&caller, id).await?, true),
        _ => (Vec::new(), false),
    };
    items.extend(input::items(req.input.as_ref())?);
    let forwarded = if continued { expanded(&raw, &items)? } else { raw };
    let chat = translate::to_chat(&req, &items, &name)?;
    let chat: ChatCompletionRequest = serde_json::from_value(chat).map_err(|e| ApiError::Internal(e.to_string()))?;
    let echo = translate::echo(&req);
    let response = state
        .inference
        .metered(&caller, &model, async {
            let chat = validate::chat(chat, &state.limits.rules())?;
            state
                .inference
                .dispatch(&caller, &model, Route::Responses, forwarded, move |instance, lease| {
                    super::respond::respond(instance, lease, chat, name, echo)
                })
                .await
        })
        .await?;
    Ok(match archive.filter(|_| req.stored()) {
        Some(archive) => archive.keeping(caller, model.spec.name.to_string(), items, response).await,
        None => response,
    })
}

/// The client's body with `input` replaced by the whole conversation, for
/// the node that runs it.
fn expanded(raw: &[u8], items: &[Value]) -> ApiResult<Bytes> {
    let mut body: Value = serde_json::from_slice(raw).map_err(|e| ApiError::BadJson(e.to_string()))?;
    body["input"] = Value::Array(items.to_vec());
    Ok(Bytes::from(body.to_string()))
}

fn archive(state: &AppState) -> ApiResult<&ResponseArchive> {
    state.inference.responses.as_ref().ok_or_else(|| ApiError::Unsupported {
        param: "store",
        message: "this server keeps no responses (it has no database)".into(),
    })
}

/// `GET /v1/responses/{id}`.
pub async fn retrieve(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    let stored = archive(&state)?.get(&caller, &id).await?;
    Ok(Json(stored.body).into_response())
}

/// `DELETE /v1/responses/{id}`.
pub async fn delete(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    archive(&state)?.delete(&caller, &id).await?;
    Ok(Json(json!({"id": id, "object": "response", "deleted": true})).into_response())
}

/// `order` of a list: `asc` or `desc` (the API's default).
#[derive(Debug, serde::Deserialize)]
pub struct ListOrder {
    order: Option<String>,
}

/// `GET /v1/responses/{id}/input_items`: the conversation the response
/// answered, newest first unless `order=asc` (one page: conversations are small).
pub async fn input_items(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(list): Query<ListOrder>,
) -> ApiResult<Response> {
    let mut stored = archive(&state)?.get(&caller, &id).await?;
    match list.order.as_deref() {
        None | Some("desc") => stored.input.reverse(),
        Some("asc") => {}
        Some(_) => return Err(ApiError::invalid("order", "order: 'asc' or 'desc'")),
    }
    let first = stored.input.first().map(|i| i["id"].clone());
    let last = stored.input.last().map(|i| i["id"].clone());
    Ok(Json(json!({"object": "list", "data": stored.input, "first_id": first, "last_id": last, "has_more": false}))
        .into_response())
}
