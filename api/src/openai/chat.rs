//! `POST /v1/chat/completions`, whole and streamed.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use greenthread_core::grammar::{HermesToolCalls, ToolCallSplitter, ToolSplit};
use greenthread_core::{ChatMessage, FinishReason, TokenLogprob};
use greenthread_node_runtime::{GenerationEvent, GenerationStream, ModelInstance};
use greenthread_scheduler::Lease;

use super::choices::{self, ChoiceOutput};
use crate::catalog::CatalogEntry;
use crate::engine_errors::from_engine;
use crate::gate::Caller;
use crate::http::json::ApiJson;
use crate::inference::Route;
use crate::inference::metering::{counted, tallied, usage_comment};
use crate::state::AppState;
use crate::usage::Tally;
use greenthread_protocol::error::{ApiError, ApiResult};
use greenthread_protocol::ids::{SYSTEM_FINGERPRINT, now_unix, response_id};
use greenthread_protocol::openai::tools;
use greenthread_protocol::openai::tools::ValidOutput;
use greenthread_protocol::openai::types::{
    ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatDelta, ChatMessageOut,
    UsageOut,
};
use greenthread_protocol::openai::validate::{self, ValidChat};

pub async fn unified(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req, raw): ApiJson<ChatCompletionRequest>,
) -> ApiResult<Response> {
    let model = state.inference.model_for_body(&caller, req.model.as_deref())?;
    complete(&state, &caller, model, req, raw).await
}

pub async fn per_model(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req, raw): ApiJson<ChatCompletionRequest>,
) -> ApiResult<Response> {
    let model = state.inference.model_for_path(&caller, &name)?;
    complete(&state, &caller, model, req, raw).await
}

/// Runs a chat request on `model`, metered for `caller`.
pub(crate) async fn complete(
    state: &AppState,
    caller: &Caller,
    model: Arc<CatalogEntry>,
    req: ChatCompletionRequest,
    raw: bytes::Bytes,
) -> ApiResult<Response> {
    state
        .inference
        .metered(caller, &model, async {
            let chat = validate::chat(req, &state.limits.rules())?;
            let name = model.spec.name.to_string();
            state
                .inference
                .dispatch(caller, &model, Route::Chat, raw, move |instance, lease| {
                    generate(instance, lease, chat, name)
                })
                .await
        })
        .await
}

/// Runs the request on a model in this process.
async fn generate(
    instance: Arc<dyn ModelInstance>,
    lease: Option<Lease>,
    chat: ValidChat,
    name: String,
) -> ApiResult<Response> {
    let ValidChat { messages, output, generation } = chat;
    let prompt = prompt(&instance, messages, &output, &name).await?;
    let prompt_tokens = prompt.len() as u32;
    let running = choices::start(instance.as_ref(), &prompt, &generation, 0)?;
    let id = response_id("chatcmpl");
    let logprobs = generation.logprobs.is_some();
    if generation.stream {
        let report = UsageReport { include: generation.include_usage, continuous: generation.continuous_usage };
        let out = ChunkWriter { id, model: name, created: now_unix(), prompt_tokens, report };
        let tally = Tally::default();
        let events = stream(out, running, output.callable, lease, tally.clone());
        return Ok(tallied(Sse::new(events).into_response(), tally));
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
        choices: outputs.into_iter().map(|o| choice(o, output.callable.as_deref(), logprobs)).collect(),
        usage: UsageOut::new(prompt_tokens, completion_tokens),
    };
    Ok(counted(Json(body).into_response(), prompt_tokens, completion_tokens))
}

/// A chat request's prompt: the model's chat template over the messages and
/// the offered tools, tokenized.
///
/// # Errors
/// A 400 when tools are offered to a model whose template has none; the template's own errors.
pub(crate) async fn prompt(
    instance: &Arc<dyn ModelInstance>,
    messages: Vec<ChatMessage>,
    output: &ValidOutput,
    name: &str,
) -> ApiResult<Vec<u32>> {
    if output.tools.is_some() && !instance.info().tool_calls {
        return Err(ApiError::invalid(
            "tools",
            format!("model {name}'s chat template does not offer tools; send the request without tools"),
        ));
    }
    let tools = output.tools.clone();
    choices::prepare(instance, move |m| m.chat_prompt(&messages, tools.as_ref()).map_err(from_engine)).await
}

/// A whole choice, its tool calls separated from its text when tools were
/// offered, with its tokens' log-probabilities when they were asked for.
fn choice(o: ChoiceOutput, callable: Option<&[String]>, logprobs: bool) -> ChatChoice {
    let logprobs = logprobs.then(|| greenthread_protocol::openai::logprobs::chat(&o.logprobs));
    let (text, calls) = match callable {
        Some(tools) => HermesToolCalls::parse(&o.text, tools),
        None => (o.text, Vec::new()),
    };
    let finish_reason = if calls.is_empty() { o.finish.openai() } else { "tool_calls" };
    ChatChoice {
        index: o.index,
        message: ChatMessageOut {
            role: "assistant",
            content: tools::content_beside_calls(text, calls.len()),
            tool_calls: calls.into_iter().map(tools::call_out).collect(),
        },
        logprobs,
        finish_reason,
        stop_reason: stop_sequence(&o.finish),
    }
}

/// The stop sequence behind a finish, if one ended it.
fn stop_sequence(finish: &FinishReason) -> Option<String> {
    match finish {
        FinishReason::StopSequence(s) => Some(s.clone()),
        _ => None,
    }
}

/// What usage a stream reports: at its end (`include_usage`), and on every
/// chunk with the completion tokens so far (`continuous_usage_stats`).
#[derive(Debug, Clone, Copy)]
struct UsageReport {
    include: bool,
    continuous: bool,
}

/// Writes one stream's chunks: its id, model and creation time on each,
/// and the usage the client asked to see.
struct ChunkWriter {
    id: String,
    model: String,
    created: u64,
    prompt_tokens: u32,
    report: UsageReport,
}

impl ChunkWriter {
    /// With usage requested, every chunk carries `"usage": null` until the
    /// last (or, with continuous usage, the tokens so far).
    fn usage_at(&self, completion_tokens: u32) -> Option<Option<UsageOut>> {
        if self.report.continuous {
            Some(Some(UsageOut::new(self.prompt_tokens, completion_tokens)))
        } else {
            self.report.include.then_some(None)
        }
    }

    /// A chunk for choice `index` (none: the closing usage chunk).
    fn chunk(
        &self,
        index: Option<u32>,
        delta: ChatDelta,
        finish: Option<(&'static str, Option<String>)>,
        usage: Option<Option<UsageOut>>,
    ) -> Result<Event, Infallible> {
        self.chunk_with(index, delta, finish, usage, Vec::new())
    }

    /// A chunk carrying the log-probabilities of `tokens` (none: `null`).
    fn chunk_with(
        &self,
        index: Option<u32>,
        delta: ChatDelta,
        finish: Option<(&'static str, Option<String>)>,
        usage: Option<Option<UsageOut>>,
        tokens: Vec<TokenLogprob>,
    ) -> Result<Event, Infallible> {
        let (finish_reason, stop_reason) = finish.map_or((None, None), |(f, s)| (Some(f), s));
        let logprobs = (!tokens.is_empty()).then(|| greenthread_protocol::openai::logprobs::chat(&tokens));
        let choices = index
            .map(|index| ChatChunkChoice { index, delta, logprobs, finish_reason, stop_reason })
            .into_iter()
            .collect();
        let body = ChatCompletionChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            system_fingerprint: SYSTEM_FINGERPRINT,
            choices,
            usage,
        };
        Ok(Event::default().data(serde_json::to_string(&body).unwrap_or_default()))
    }
}

/// The SSE stream: a role chunk per choice, content chunks as tokens come, a
/// finish chunk per choice, the usage chunk if asked for, then `[DONE]`. A
/// failure mid-stream is an `{"error": …}` data line, which the SDKs raise.
fn stream(
    out: ChunkWriter,
    running: Vec<(u32, GenerationStream)>,
    callable: Option<Vec<String>>,
    lease: Option<Lease>,
    tally: Tally,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    let choice_count = running.len();
    let prompt_tokens = out.prompt_tokens;
    async_stream::stream! {
        for index in 0..choice_count as u32 {
            let delta = ChatDelta { role: Some("assistant"), content: Some(String::new()), tool_calls: None };
            yield out.chunk(Some(index), delta, None, out.usage_at(0));
        }
        let mut events = choices::merge(running);
        let mut splitters: Vec<ChoiceSplitter> = (0..choice_count).map(|_| ChoiceSplitter::new(callable.clone())).collect();
        // Tokens' log-probabilities wait for the chunk that carries their text.
        let mut pending: Vec<Vec<TokenLogprob>> = vec![Vec::new(); choice_count];
        let (mut done, mut completion_tokens, mut streamed) = (0, 0, 0);
        while let Some((index, event)) = events.next().await {
            let splitter = &mut splitters[index as usize];
            match event {
                GenerationEvent::Logprob(lp) => pending[index as usize].push(lp),
                GenerationEvent::Text(text) => {
                    streamed += 1;
                    let so_far = completion_tokens + streamed;
                    for delta in splitter.push(&text) {
                        let tokens = std::mem::take(&mut pending[index as usize]);
                        yield out.chunk_with(Some(index), delta, None, out.usage_at(so_far), tokens);
                    }
                }
                GenerationEvent::Done { finish, usage } => {
                    done += 1;
                    completion_tokens += usage.completion_tokens;
                    streamed = 0;
                    for delta in splitter.finish() {
                        yield out.chunk(Some(index), delta, None, out.usage_at(completion_tokens));
                    }
                    let reason = if splitter.calls > 0 { "tool_calls" } else { finish.openai() };
                    let finish = (reason, stop_sequence(&finish));
                    let tokens = std::mem::take(&mut pending[index as usize]);
                    yield out.chunk_with(Some(index), ChatDelta::default(), Some(finish), out.usage_at(completion_tokens), tokens);
                }
                GenerationEvent::Failed { message, .. } => {
                    tracing::error!(error = %message, "Generation failed mid-stream");
                    tally.failed();
                    let error = ApiError::Internal(message);
                    yield Ok(Event::default().data(error.body().to_string()));
                    break;
                }
            }
        }
        if done == choice_count && out.report.include {
            yield out.chunk(None, ChatDelta::default(), None, Some(Some(UsageOut::new(prompt_tokens, completion_tokens))));
        }
        tally.tokens(prompt_tokens, completion_tokens + streamed);
        yield Ok(usage_comment(prompt_tokens, completion_tokens + streamed));
        yield Ok(Event::default().data("[DONE]"));
        // The model counts this request in flight until the last chunk is out.
        drop(lease);
    }
}

/// One streamed choice's text turned into deltas: content as it comes, tool
/// calls once each is complete.
struct ChoiceSplitter {
    splitter: Option<ToolCallSplitter>,
    calls: u32,
}

impl ChoiceSplitter {
    fn new(callable: Option<Vec<String>>) -> Self {
        Self { splitter: callable.map(ToolCallSplitter::new), calls: 0 }
    }

    fn push(&mut self, text: &str) -> Vec<ChatDelta> {
        match &mut self.splitter {
            None => vec![content_delta(text.to_owned())],
            Some(s) => {
                let parts = s.push(text);
                self.deltas(parts)
            }
        }
    }

    fn finish(&mut self) -> Vec<ChatDelta> {
        let parts = self.splitter.as_mut().map(ToolCallSplitter::finish).unwrap_or_default();
        self.deltas(parts)
    }

    fn deltas(&mut self, parts: Vec<ToolSplit>) -> Vec<ChatDelta> {
        let mut out = Vec::new();
        for part in parts {
            match part {
                ToolSplit::Text(t) => out.push(content_delta(t)),
                ToolSplit::Call(call) => {
                    for d in tools::call_deltas(self.calls, call) {
                        out.push(ChatDelta { role: None, content: None, tool_calls: Some(vec![d]) });
                    }
                    self.calls += 1;
                }
            }
        }
        out
    }
}

fn content_delta(text: String) -> ChatDelta {
    ChatDelta { role: None, content: Some(text), tool_calls: None }
}
