//! One answer of a request read as chat — what the Anthropic Messages and
//! the Responses APIs build theirs from: its prompt, and its generation as
//! text and tool calls, whole or part by part as it streams.

use std::sync::Arc;

use futures_util::Stream;
use greenthread_core::FinishReason;
use greenthread_core::grammar::{HermesToolCalls, ParsedToolCall, ToolCallSplitter, ToolSplit};
use greenthread_node_runtime::{GenerationEvent, GenerationStream, ModelInstance};
use greenthread_protocol::error::{ApiError, ApiResult};
use greenthread_protocol::openai::validate::ValidChat;

use super::{chat, choices};

/// A started answer: the prompt's token count, its events, and the tools it may call.
pub(crate) struct Started {
    pub input_tokens: u32,
    pub events: GenerationStream,
    pub callable: Option<Vec<String>>,
    pub stream: bool,
}

/// Renders and starts the one answer of `request` on `instance`.
///
/// # Errors
/// As [`chat::prompt`] and [`choices::start`].
pub(crate) async fn start(instance: &Arc<dyn ModelInstance>, request: ValidChat, name: &str) -> ApiResult<Started> {
    let ValidChat { messages, output, generation } = request;
    let prompt = chat::prompt(instance, messages, &output, name).await?;
    let Some((_, events)) = choices::start(instance.as_ref(), &prompt, &generation, 0)?.pop() else {
        return Err(ApiError::Internal("no generation was started".into()));
    };
    Ok(Started { input_tokens: prompt.len() as u32, events, callable: output.callable, stream: generation.stream })
}

/// A whole answer: its text beside its tool calls, how it ended, its tokens.
pub(crate) struct Whole {
    pub text: String,
    pub calls: Vec<ParsedToolCall>,
    pub finish: FinishReason,
    pub output_tokens: u32,
}

/// Waits for the whole answer and splits its calls from its text.
///
/// # Errors
/// When the generation fails part-way.
pub(crate) async fn whole(events: GenerationStream, callable: Option<&[String]>) -> ApiResult<Whole> {
    let done = choices::collect(vec![(0, events)]).await?.pop();
    let done = done.ok_or_else(|| ApiError::Internal("the generation left no answer".into()))?;
    let (text, calls) = match callable {
        Some(tools) => HermesToolCalls::parse(&done.text, tools),
        None => (done.text, Vec::new()),
    };
    Ok(Whole { text, calls, finish: done.finish, output_tokens: done.completion_tokens })
}

/// A streamed answer, part by part.
pub(crate) enum Part {
    /// Text or a complete tool call.
    Split(ToolSplit),
    Done {
        finish: FinishReason,
        output_tokens: u32,
    },
    /// The generation failed after about `output_tokens` tokens.
    Failed {
        message: String,
        output_tokens: u32,
    },
}

/// The answer's parts as they come: calls split from the text, then its
/// end (or its failure; a stream that stops without a result is one).
pub(crate) fn parts(mut events: GenerationStream, callable: Option<Vec<String>>) -> impl Stream<Item = Part> + Send {
    async_stream::stream! {
        let mut splitter = callable.map(ToolCallSplitter::new);
        let mut output_tokens = 0;
        loop {
            match events.next().await {
                Some(GenerationEvent::Text(text)) => {
                    output_tokens += 1;
                    let split = match &mut splitter {
                        Some(s) => s.push(&text),
                        None => vec![ToolSplit::Text(text)],
                    };
                    for part in split {
                        yield Part::Split(part);
                    }
                }
                // Never asked for on these routes.
                Some(GenerationEvent::Logprob(_)) => {}
                Some(GenerationEvent::Done { finish, usage }) => {
                    for part in splitter.as_mut().map(ToolCallSplitter::finish).unwrap_or_default() {
                        yield Part::Split(part);
                    }
                    yield Part::Done { finish, output_tokens: usage.completion_tokens };
                    break;
                }
                Some(GenerationEvent::Failed { message, .. }) => {
                    tracing::error!(error = %message, "Generation failed mid-stream");
                    yield Part::Failed { message, output_tokens };
                    break;
                }
                None => {
                    yield Part::Failed { message: "the generation ended without a result".into(), output_tokens };
                    break;
                }
            }
        }
    }
}
