//! A Messages request run on a model in this process: the chat path's
//! prompt and sampling, and the answer built as Anthropic's from the typed
//! generation events (a gateway forwards Messages requests to the node that
//! runs them, so this is where every Messages answer is made).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use greenthread_core::grammar::ToolSplit;
use greenthread_node_runtime::ModelInstance;
use greenthread_protocol::anthropic::answer::{self, Generated, MessageStream, NamedEvent};
use greenthread_protocol::error::ApiResult;
use greenthread_protocol::openai::validate::ValidChat;
use greenthread_scheduler::Lease;

use crate::inference::metering::{counted, tallied, usage_comment};
use crate::openai::single::{self, Part};
use crate::usage::Tally;

/// Runs a validated Messages request (as a chat request) on `instance`.
pub(super) async fn messages(
    instance: Arc<dyn ModelInstance>,
    lease: Option<Lease>,
    request: ValidChat,
    name: String,
) -> ApiResult<Response> {
    let started = single::start(&instance, request, &name).await?;
    let input_tokens = started.input_tokens;
    if started.stream {
        return Ok(stream(name, started, lease));
    }
    let answer = single::whole(started.events, started.callable.as_deref()).await;
    drop(lease);
    let single::Whole { text, calls, finish, output_tokens } = answer?;
    let body = answer::whole(&name, Generated { text, calls, finish, input_tokens, output_tokens });
    Ok(counted(Json(body).into_response(), input_tokens, output_tokens))
}

fn sse(event: NamedEvent) -> Result<Event, Infallible> {
    Ok(Event::default().event(event.0).data(event.1.to_string()))
}

/// Anthropic's stream of one answer; tool calls are split from the text as
/// it comes. A failure mid-stream is an `error` event, which the SDKs raise.
fn stream(model: String, started: single::Started, lease: Option<Lease>) -> Response {
    let tally = Tally::default();
    let reporting = tally.clone();
    let single::Started { input_tokens, events, callable, .. } = started;
    let body = async_stream::stream! {
        // The model counts this request in flight until the last event is out.
        let _lease = lease;
        let (mut out, start) = MessageStream::start(&model, input_tokens);
        yield sse(start);
        let mut output_tokens = 0;
        let mut parts = std::pin::pin!(single::parts(events, callable));
        while let Some(part) = parts.next().await {
            let events = match part {
                Part::Split(ToolSplit::Text(text)) => out.text(&text),
                Part::Split(ToolSplit::Call(call)) => out.tool_call(call),
                Part::Done { finish, output_tokens: counted } => {
                    output_tokens = counted;
                    for event in out.finish(&finish, output_tokens) {
                        yield sse(event);
                    }
                    break;
                }
                Part::Failed { message, output_tokens: so_far } => {
                    output_tokens = so_far;
                    reporting.failed();
                    vec![answer::failure(&message)]
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
