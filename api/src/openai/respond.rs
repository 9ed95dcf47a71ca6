//! A Responses request run on a model in this process: the chat path's
//! prompt and sampling, and the answer built as a `response` object from the
//! typed generation events, whole or as the Responses stream (a gateway
//! forwards Responses requests to the node that runs them, so this is where
//! every `response` is made).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use greenthread_core::grammar::{HermesToolCalls, ToolCallSplitter, ToolSplit};
use greenthread_node_runtime::{GenerationEvent, GenerationStream, ModelInstance};
use greenthread_protocol::error::{ApiError, ApiResult};
use greenthread_protocol::ids::now_unix;
use greenthread_protocol::openai::validate::ValidChat;
use greenthread_protocol::responses::answer::{self, Envelope, Generated, ResponseStream, TypedEvent};
use greenthread_scheduler::Lease;
use serde_json::Value;

use super::{chat, choices};
use crate::inference::metering::{counted, tallied, usage_comment};
use crate::usage::Tally;

/// Runs a validated Responses request (as a chat request) on `instance`;
/// `echo` holds the request fields the `response` object repeats.
pub(super) async fn respond(
    instance: Arc<dyn ModelInstance>,
    lease: Option<Lease>,
    request: ValidChat,
    name: String,
    echo: Value,
) -> ApiResult<Response> {
    let ValidChat { messages, output, generation } = request;
    let prompt = chat::prompt(&instance, messages, &output, &name).await?;
    let input_tokens = prompt.len() as u32;
    let Some((_, events)) = choices::start(instance.as_ref(), &prompt, &generation, 0)?.pop() else {
        return Err(ApiError::Internal("no generation was started".into()));
    };
    let envelope = Envelope { id: answer::response_id(), created_at: now_unix(), model: name, echo };
    if generation.stream {
        return Ok(stream(envelope, events, input_tokens, output.callable, lease));
    }
    let done = choices::collect(vec![(0, events)]).await?.pop();
    drop(lease);
    let done = done.ok_or_else(|| ApiError::Internal("the generation left no answer".into()))?;
    let (text, calls) = match &output.callable {
        Some(tools) => HermesToolCalls::parse(&done.text, tools),
        None => (done.text, Vec::new()),
    };
    let output_tokens = done.completion_tokens;
    let body = answer::whole(&envelope, Generated { text, calls, finish: done.finish, input_tokens, output_tokens });
    Ok(counted(Json(body).into_response(), input_tokens, output_tokens))
}

fn sse(event: TypedEvent) -> Result<Event, Infallible> {
    Ok(Event::default().event(event.0).data(event.1.to_string()))
}

/// The Responses stream of one answer; tool calls are split from the text
/// as it comes. A failure mid-stream is `response.failed`, which the SDKs raise.
fn stream(
    envelope: Envelope,
    mut events: GenerationStream,
    input_tokens: u32,
    callable: Option<Vec<String>>,
    lease: Option<Lease>,
) -> Response {
    let tally = Tally::default();
    let reporting = tally.clone();
    let body = async_stream::stream! {
        // The model counts this request in flight until the last event is out.
        let _lease = lease;
        let (mut out, opening) = ResponseStream::start(envelope);
        for event in opening {
            yield sse(event);
        }
        let mut splitter = callable.map(ToolCallSplitter::new);
        let mut output_tokens = 0;
        loop {
            match events.next().await {
                Some(GenerationEvent::Text(text)) => {
                    output_tokens += 1;
                    let parts = match &mut splitter {
                        Some(s) => s.push(&text),
                        None => vec![ToolSplit::Text(text)],
                    };
                    for event in parts.into_iter().flat_map(|part| write(&mut out, part)) {
                        yield sse(event);
                    }
                }
                // Never asked for on this route.
                Some(GenerationEvent::Logprob(_)) => {}
                Some(GenerationEvent::Done { finish, usage }) => {
                    output_tokens = usage.completion_tokens;
                    let rest = splitter.as_mut().map(ToolCallSplitter::finish).unwrap_or_default();
                    for event in rest.into_iter().flat_map(|part| write(&mut out, part)) {
                        yield sse(event);
                    }
                    for event in out.finish(&finish, input_tokens, output_tokens) {
                        yield sse(event);
                    }
                    break;
                }
                Some(GenerationEvent::Failed { message, .. }) => {
                    tracing::error!(error = %message, "Generation failed mid-stream");
                    reporting.failed();
                    for event in out.failure(&message) {
                        yield sse(event);
                    }
                    break;
                }
                None => {
                    reporting.failed();
                    for event in out.failure("the generation ended without a result") {
                        yield sse(event);
                    }
                    break;
                }
            }
        }
        reporting.tokens(input_tokens, output_tokens);
        // For a gateway's meter, when this runs on a node (clients ignore comments).
        yield Ok(usage_comment(input_tokens, output_tokens));
    };
    tallied(Sse::new(body).into_response(), tally)
}

fn write(out: &mut ResponseStream, part: ToolSplit) -> Vec<TypedEvent> {
    match part {
        ToolSplit::Text(text) => out.text(&text),
        ToolSplit::Call(call) => out.tool_call(&call),
    }
}
