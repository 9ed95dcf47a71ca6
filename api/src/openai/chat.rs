//! `POST /v1/chat/completions`, whole and streamed.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use greenthread_node_runtime::{GenerationEvent, GenerationStream, ModelInstance};
use greenthread_scheduler::Lease;

use super::choices::{self, SYSTEM_FINGERPRINT, now_unix, response_id};
use super::types::{
    ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatDelta, ChatMessageOut,
    UsageOut,
};
use super::validate::{self, ValidChat};
use super::{Route, dispatch, model_for_body, model_for_path};
use crate::catalog::CatalogEntry;
use crate::http::error::{ApiError, ApiResult};
use crate::http::gate::Caller;
use crate::http::json::ApiJson;
use crate::http::state::AppState;

pub async fn unified(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req, raw): ApiJson<ChatCompletionRequest>,
) -> ApiResult<Response> {
    let model = model_for_body(&state, &caller, req.model.as_deref())?;
    complete(&state, model, req, raw).await
}

pub async fn per_model(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req, raw): ApiJson<ChatCompletionRequest>,
) -> ApiResult<Response> {
    let model = model_for_path(&state, &caller, &name)?;
    complete(&state, model, req, raw).await
}

async fn complete(
    state: &AppState,
    model: Arc<CatalogEntry>,
    req: ChatCompletionRequest,
    raw: bytes::Bytes,
) -> ApiResult<Response> {
    let chat = validate::chat(req, &state.limits)?;
    let name = model.spec.name.to_string();
    dispatch(state, &model, Route::Chat, raw, move |instance, lease| generate(instance, lease, chat, name)).await
}

/// Runs the request on a model in this process.
async fn generate(
    instance: Arc<dyn ModelInstance>,
    lease: Option<Lease>,
    chat: ValidChat,
    name: String,
) -> ApiResult<Response> {
    let ValidChat { messages, tools, generation } = chat;
    let prompt = choices::prepare(&instance, move |m| Ok(m.chat_prompt(&messages, tools.as_ref())?)).await?;
    let prompt_tokens = prompt.len() as u32;
    let running = choices::start(instance.as_ref(), &prompt, &generation, 0)?;
    let id = response_id("chatcmpl");
    if generation.stream {
        let events = stream(id, name, running, prompt_tokens, generation.include_usage, lease);
        return Ok(Sse::new(events).into_response());
    }
    let outputs = choices::collect(running).await?;
    drop(lease);
    let completion_tokens = outputs.iter().map(|o| o.completion_tokens).sum();
    let body = ChatCompletion {
        id,
        object: "chat.completion",
        created: now_unix(),
        model: name,
        system_fingerprint: SYSTEM_FINGERPRINT,
        choices: outputs
            .into_iter()
            .map(|o| ChatChoice {
                index: o.index,
                message: ChatMessageOut { role: "assistant", content: o.text },
                logprobs: None,
                finish_reason: o.finish.openai(),
            })
            .collect(),
        usage: UsageOut::new(prompt_tokens, completion_tokens),
    };
    Ok(Json(body).into_response())
}

/// The SSE stream: a role chunk per choice, content chunks as tokens come, a
/// finish chunk per choice, the usage chunk if asked for, then `[DONE]`. A
/// failure mid-stream is an `{"error": …}` data line, which the SDKs raise.
fn stream(
    id: String,
    model: String,
    running: Vec<(u32, GenerationStream)>,
    prompt_tokens: u32,
    include_usage: bool,
    lease: Option<Lease>,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    let created = now_unix();
    let choice_count = running.len();
    // With usage requested, every chunk carries `"usage": null` until the last.
    let usage_null = include_usage.then_some(None);
    let chunk = move |index: Option<u32>, delta: ChatDelta, finish: Option<&'static str>, usage| {
        let choices = index
            .map(|index| ChatChunkChoice { index, delta, logprobs: None, finish_reason: finish })
            .into_iter()
            .collect();
        let body = ChatCompletionChunk {
            id: &id,
            object: "chat.completion.chunk",
            created,
            model: &model,
            system_fingerprint: SYSTEM_FINGERPRINT,
            choices,
            usage,
        };
        Ok(Event::default().data(serde_json::to_string(&body).unwrap_or_default()))
    };
    async_stream::stream! {
        for index in 0..choice_count as u32 {
            let delta = ChatDelta { role: Some("assistant"), content: Some(String::new()) };
            yield chunk(Some(index), delta, None, usage_null);
        }
        let mut events = choices::merge(running);
        let (mut done, mut completion_tokens) = (0, 0);
        while let Some((index, event)) = events.next().await {
            match event {
                GenerationEvent::Text(text) => {
                    yield chunk(Some(index), ChatDelta { role: None, content: Some(text) }, None, usage_null);
                }
                GenerationEvent::Done { finish, usage } => {
                    done += 1;
                    completion_tokens += usage.completion_tokens;
                    yield chunk(Some(index), ChatDelta::default(), Some(finish.openai()), usage_null);
                }
                GenerationEvent::Failed { message, .. } => {
                    tracing::error!(error = %message, "Generation failed mid-stream");
                    let error = ApiError::Internal(message);
                    yield Ok(Event::default().data(error.body().to_string()));
                    break;
                }
            }
        }
        if done == choice_count && include_usage {
            yield chunk(None, ChatDelta::default(), None, Some(Some(UsageOut::new(prompt_tokens, completion_tokens))));
        }
        yield Ok(Event::default().data("[DONE]"));
        // The model counts this request in flight until the last chunk is out.
        drop(lease);
    }
}
