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
use futures_util::StreamExt;
use greenthread_core::grammar::ToolSplit;
use greenthread_node_runtime::ModelInstance;
use greenthread_protocol::error::ApiResult;
use greenthread_protocol::ids::now_unix;
use greenthread_protocol::openai::validate::ValidChat;
use greenthread_protocol::responses::answer::{self, Envelope, Generated, ResponseStream, TypedEvent};
use greenthread_scheduler::Lease;
use serde_json::Value;

use super::single::{self, Part};
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
    let started = single::start(&instance, request, &name).await?;
    let input_tokens = started.input_tokens;
    let envelope = Envelope { id: answer::response_id(), created_at: now_unix(), model: name, echo };
    if started.stream {
        return Ok(stream(envelope, started, lease));
    }
    let done = single::whole(started.events, started.callable.as_deref()).await;
    drop(lease);
    let single::Whole { text, calls, finish, output_tokens } = done?;
    let body = answer::whole(&envelope, Generated { text, calls, finish, input_tokens, output_tokens });
    Ok(counted(Json(body).into_response(), input_tokens, output_tokens))
}

fn sse(event: TypedEvent) -> Result<Event, Infallible> {
    Ok(Event::default().event(event.0).data(event.1.to_string()))
}

/// The Responses stream of one answer; tool calls are split from the text
/// as it comes. A failure mid-stream is `response.failed`, which the SDKs raise.
fn stream(envelope: Envelope, started: single::Started, lease: Option<Lease>) -> Response {
    let tally = Tally::default();
    let reporting = tally.clone();
    let single::Started { input_tokens, events, callable, .. } = started;
    let body = async_stream::stream! {
        // The model counts this request in flight until the last event is out.
        let _lease = lease;
        let (mut out, opening) = ResponseStream::start(envelope);
        for event in opening {
            yield sse(event);
        }
        let mut output_tokens = 0;
        let mut parts = std::pin::pin!(single::parts(events, callable));
        while let Some(part) = parts.next().await {
            let events = match part {
                Part::Split(ToolSplit::Text(text)) => out.text(&text),
                Part::Split(ToolSplit::Call(call)) => out.tool_call(&call),
                Part::Done { finish, output_tokens: counted } => {
                    output_tokens = counted;
                    out.finish(&finish, input_tokens, output_tokens)
                }
                Part::Failed { message, output_tokens: so_far } => {
                    output_tokens = so_far;
                    reporting.failed();
                    out.failure(&message)
                }
            };
            for event in events {
                yield sse(event);
            }
        }
        reporting.tokens(input_tokens, output_tokens);
        // For a gateway's meter, when this runs on a node (clients ignore comments).
        yield Ok(usage_comment(input_tokens, output_tokens));
    };
    tallied(Sse::new(body).into_response(), tally)
}
