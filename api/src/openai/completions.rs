//! `POST /v1/completions` (the legacy text completions API), whole and streamed.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use greenthread_core::TokenLogprob;
use greenthread_node_runtime::{GenerationEvent, GenerationStream, ModelInstance};
use greenthread_scheduler::Lease;

use super::choices;
use crate::catalog::CatalogEntry;
use crate::gate::Caller;
use crate::http::json::ApiJson;
use crate::inference::Route;
use crate::inference::metering::{counted, tallied, usage_comment};
use crate::state::AppState;
use crate::usage::Tally;
use greenthread_protocol::error::{ApiError, ApiResult};
use greenthread_protocol::ids::{SYSTEM_FINGERPRINT, now_unix, response_id};
use greenthread_protocol::openai::logprobs;
use greenthread_protocol::openai::types::{Completion, CompletionChoice, CompletionRequest, UsageOut};
use greenthread_protocol::openai::validate::{self, ValidCompletion, ValidPrompt};

pub async fn unified(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req, raw): ApiJson<CompletionRequest>,
) -> ApiResult<Response> {
    let model = state.inference.model_for_body(&caller, req.model.as_deref())?;
    complete(&state, &caller, model, req, raw).await
}

pub async fn per_model(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req, raw): ApiJson<CompletionRequest>,
) -> ApiResult<Response> {
    let model = state.inference.model_for_path(&caller, &name)?;
    complete(&state, &caller, model, req, raw).await
}

/// One prompt, tokenized, with its text for `echo`.
struct Prompt {
    tokens: Vec<u32>,
    text: String,
}

async fn complete(
    state: &AppState,
    caller: &Caller,
    model: Arc<CatalogEntry>,
    req: CompletionRequest,
    raw: bytes::Bytes,
) -> ApiResult<Response> {
    state
        .inference
        .metered(caller, &model, async {
            let valid = validate::completion(req, &state.limits.rules())?;
            let name = model.spec.name.to_string();
            state
                .inference
                .dispatch(caller, &model, Route::Completions, raw, move |instance, lease| {
                    generate(instance, lease, valid, name)
                })
                .await
        })
        .await
}

/// Runs the request on a model in this process.
async fn generate(
    instance: Arc<dyn ModelInstance>,
    lease: Option<Lease>,
    valid: ValidCompletion,
    name: String,
) -> ApiResult<Response> {
    let ValidCompletion { prompts, echo, suffix, generation } = valid;
    let model_name = name.clone();
    let prompts = choices::prepare(&instance, move |m| {
        prompts
            .into_iter()
            .map(|p| match p {
                ValidPrompt::Text(text) => {
                    let tokens = match &suffix {
                        None => m.text_prompt(&text),
                        Some(after) => m.fill_in_middle(&text, after).ok_or_else(|| {
                            ApiError::invalid(
                                "suffix",
                                format!(
                                    "model {model_name} has no fill-in-the-middle tokens; send the request without suffix"
                                ),
                            )
                        })?,
                    };
                    Ok(Prompt { tokens, text })
                }
                ValidPrompt::Tokens(tokens) => {
                    let text = if echo { m.prompt_text(&tokens) } else { String::new() };
                    Ok(Prompt { text, tokens })
                }
            })
            .collect::<ApiResult<Vec<_>>>()
    })
    .await?;
    let mut running = Vec::new();
    let mut echoes = Vec::new();
    for (i, prompt) in prompts.iter().enumerate() {
        running.extend(choices::start(instance.as_ref(), &prompt.tokens, &generation, i as u32 * generation.n)?);
        for _ in 0..generation.n {
            echoes.push(if echo { prompt.text.clone() } else { String::new() });
        }
    }
    let prompt_tokens = prompts.iter().map(|p| p.tokens.len() as u32).sum();
    let id = response_id("cmpl");
    if generation.stream {
        let tally = Tally::default();
        let report =
            Report { prompt_tokens, include_usage: generation.include_usage, logprobs: generation.logprobs.is_some() };
        let events = stream(id, name, running, echoes, report, lease, tally.clone());
        return Ok(tallied(Sse::new(events).into_response(), tally));
    }
    let outputs = choices::collect(running).await?;
    drop(lease);
    let with_logprobs = generation.logprobs.is_some();
    let completion_tokens = outputs.iter().map(|o| o.completion_tokens).sum();
    let body = Completion {
        id: &id,
        object: "text_completion",
        created: now_unix(),
        model: &name,
        system_fingerprint: SYSTEM_FINGERPRINT,
        choices: outputs
            .into_iter()
            .map(|o| CompletionChoice {
                index: o.index,
                logprobs: with_logprobs
                    .then(|| logprobs::completion(&o.logprobs, echoes[o.index as usize].chars().count())),
                text: format!("{}{}", echoes[o.index as usize], o.text),
                finish_reason: Some(o.finish.openai()),
            })
            .collect(),
        usage: Some(Some(UsageOut::new(prompt_tokens, completion_tokens))),
    };
    Ok(counted(Json(body).into_response(), prompt_tokens, completion_tokens))
}

/// What a stream reports beside the text.
struct Report {
    prompt_tokens: u32,
    /// The usage chunk at the end.
    include_usage: bool,
    /// Each chunk's tokens' log-probabilities.
    logprobs: bool,
}

fn stream(
    id: String,
    model: String,
    running: Vec<(u32, GenerationStream)>,
    mut echoes: Vec<String>,
    Report { prompt_tokens, include_usage, logprobs: with_logprobs }: Report,
    lease: Option<Lease>,
    tally: Tally,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    let created = now_unix();
    let choice_count = running.len();
    let usage_null = include_usage.then_some(None);
    let chunk = move |choices: Vec<CompletionChoice>, usage| {
        let body = Completion {
            id: &id,
            object: "text_completion",
            created,
            model: &model,
            system_fingerprint: SYSTEM_FINGERPRINT,
            choices,
            usage,
        };
        Ok(Event::default().data(serde_json::to_string(&body).unwrap_or_default()))
    };
    let text = |index: u32, text: String, finish: Option<&'static str>| CompletionChoice {
        index,
        text,
        logprobs: None,
        finish_reason: finish,
    };
    // Each choice's text so far, in characters, and the log-probabilities
    // waiting for the chunk that carries their tokens' text.
    let mut written: Vec<usize> = echoes.iter().map(|e| e.chars().count()).collect();
    let mut pending: Vec<Vec<TokenLogprob>> = vec![Vec::new(); choice_count];
    async_stream::stream! {
        for (index, echo) in echoes.iter_mut().enumerate() {
            if !echo.is_empty() {
                yield chunk(vec![text(index as u32, std::mem::take(echo), None)], usage_null);
            }
        }
        let mut events = choices::merge(running);
        let (mut done, mut completion_tokens) = (0, 0);
        while let Some((index, event)) = events.next().await {
            match event {
                GenerationEvent::Logprob(lp) => pending[index as usize].push(lp),
                GenerationEvent::Text(t) => {
                    let i = index as usize;
                    let mut choice = text(index, t, None);
                    if with_logprobs {
                        choice.logprobs = Some(logprobs::completion(&std::mem::take(&mut pending[i]), written[i]));
                    }
                    written[i] += choice.text.chars().count();
                    yield chunk(vec![choice], usage_null);
                }
                GenerationEvent::Done { finish, usage } => {
                    done += 1;
                    completion_tokens += usage.completion_tokens;
                    yield chunk(vec![text(index, String::new(), Some(finish.openai()))], usage_null);
                }
                GenerationEvent::Failed { message, .. } => {
                    tracing::error!(error = %message, "Generation failed mid-stream");
                    tally.failed();
                    yield Ok(Event::default().data(ApiError::Internal(message).body().to_string()));
                    break;
                }
            }
        }
        if done == choice_count && include_usage {
            yield chunk(Vec::new(), Some(Some(UsageOut::new(prompt_tokens, completion_tokens))));
        }
        tally.tokens(prompt_tokens, completion_tokens);
        yield Ok(usage_comment(prompt_tokens, completion_tokens));
        yield Ok(Event::default().data("[DONE]"));
        drop(lease);
    }
}
