//! Running the `n` choices of a request: starting them, collecting them for a
//! whole response, or merging their events for a stream.

use std::sync::Arc;

use futures_util::Stream;
use futures_util::stream::{self, StreamExt};
use greenthread_core::{FinishReason, TokenLogprob};
use greenthread_node_runtime::{GenerateRequest, GenerationEvent, GenerationStream, ModelInstance};

use greenthread_protocol::error::{ApiError, ApiResult};
use greenthread_protocol::openai::validate::ValidGeneration;

/// Starts choice `first_index..first_index + n` of `prompt`.
///
/// # Errors
/// When the prompt does not fit the context or the model is stopping.
pub fn start(
    model: &dyn ModelInstance,
    prompt: &[u32],
    generation: &ValidGeneration,
    first_index: u32,
) -> ApiResult<Vec<(u32, GenerationStream)>> {
    (first_index..first_index + generation.n)
        .map(|index| {
            let stream = model
                .generate(GenerateRequest {
                    prompt: prompt.to_vec(),
                    sampling: generation.sampling_for_choice(index),
                    max_tokens: generation.max_tokens,
                    stop: generation.stop.clone(),
                    grammar: generation.grammar.clone(),
                    logprobs: generation.logprobs,
                })
                .map_err(crate::engine_errors::from_engine)?;
            Ok((index, stream))
        })
        .collect()
}

/// A finished choice.
#[derive(Debug)]
pub struct ChoiceOutput {
    pub index: u32,
    pub text: String,
    pub finish: FinishReason,
    pub completion_tokens: u32,
    /// Each token's log-probabilities, when they were asked for.
    pub logprobs: Vec<TokenLogprob>,
}

/// Waits for every choice to finish.
///
/// # Errors
/// [`ApiError::Internal`] when a generation fails part-way.
pub async fn collect(choices: Vec<(u32, GenerationStream)>) -> ApiResult<Vec<ChoiceOutput>> {
    let mut out = Vec::with_capacity(choices.len());
    for (index, mut stream) in choices {
        let mut text = String::new();
        let mut logprobs = Vec::new();
        loop {
            match stream.next().await {
                Some(GenerationEvent::Text(t)) => text.push_str(&t),
                Some(GenerationEvent::Logprob(lp)) => logprobs.push(lp),
                Some(GenerationEvent::Done { finish, usage }) => {
                    let completion_tokens = usage.completion_tokens;
                    out.push(ChoiceOutput { index, text, finish, completion_tokens, logprobs });
                    break;
                }
                Some(GenerationEvent::Failed { message, .. }) => {
                    return Err(ApiError::Internal(message));
                }
                None => {
                    return Err(ApiError::Internal("the generation ended without a result".into()));
                }
            }
        }
    }
    Ok(out)
}

/// Events of all choices as they come, each with its choice index.
pub fn merge(choices: Vec<(u32, GenerationStream)>) -> impl Stream<Item = (u32, GenerationEvent)> + Send {
    stream::select_all(choices.into_iter().map(|(index, s)| {
        stream::unfold(s, |mut s| async move { s.next().await.map(|e| (e, s)) }).map(move |e| (index, e)).boxed()
    }))
}

/// Runs blocking prompt preparation (templating, tokenizing) off the async threads.
///
/// # Errors
/// What `f` returns, or [`ApiError::Internal`] if it panicked.
pub async fn prepare<T: Send + 'static>(
    model: &Arc<dyn ModelInstance>,
    f: impl FnOnce(&dyn ModelInstance) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let model = model.clone();
    tokio::task::spawn_blocking(move || f(model.as_ref()))
        .await
        .map_err(|e| ApiError::Internal(format!("prompt preparation failed: {e}")))?
}
