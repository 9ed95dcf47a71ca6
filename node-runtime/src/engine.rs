//! The engine seam: what the gateway needs from a model, so the builtin
//! engine and later external ones (vLLM, llama.cpp server) or a model on
//! another node are interchangeable behind `Arc<dyn ModelInstance>`.

use greenthread_core::{ChatMessage, FinishReason, SamplingParams, Usage};
use tokio::sync::mpsc;

use crate::Result;

/// Facts about a loaded model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Architecture, e.g. `qwen2`.
    pub architecture: String,
    /// The model file's own name for itself (`general.name`), if any.
    pub description: Option<String>,
    /// Context window served, in tokens.
    pub context_length: usize,
    pub vocab_size: usize,
    /// Bytes of weights held for inference.
    pub weight_bytes: usize,
    pub has_chat_template: bool,
    /// Whether the chat template offers tools in the Hermes `<tool_call>` format.
    pub tool_calls: bool,
}

/// A tokenized prompt and how to continue it.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: Vec<u32>,
    pub sampling: SamplingParams,
    /// `None`: up to the end of the context window.
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    /// What the output must match (structured output, forced tool calls).
    pub grammar: Option<std::sync::Arc<greenthread_core::grammar::Grammar>>,
}

/// One event of a running generation.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerationEvent {
    /// More output text (never empty).
    Text(String),
    /// The generation ended normally.
    Done { finish: FinishReason, usage: Usage },
    /// The generation failed part-way; `usage` counts what was produced.
    Failed { message: String, usage: Usage },
}

/// The events of one generation. Dropping it cancels the generation.
#[derive(Debug)]
pub struct GenerationStream {
    rx: mpsc::UnboundedReceiver<GenerationEvent>,
}

impl GenerationStream {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<GenerationEvent>) -> Self {
        Self { rx }
    }

    /// The next event; `None` after `Done` or `Failed`.
    pub async fn next(&mut self) -> Option<GenerationEvent> {
        self.rx.recv().await
    }
}

/// A model being served.
pub trait ModelInstance: Send + Sync {
    fn info(&self) -> &ModelInfo;

    /// Renders `messages` with the model's chat template and tokenizes the result.
    ///
    /// # Errors
    /// [`crate::Error::NoChatTemplate`] or [`crate::Error::Template`].
    fn chat_prompt(&self, messages: &[ChatMessage], tools: Option<&serde_json::Value>) -> Result<Vec<u32>>;

    /// Tokenizes a raw prompt (special-token markup in it is parsed).
    fn text_prompt(&self, text: &str) -> Vec<u32>;

    /// Starts generating.
    ///
    /// # Errors
    /// [`crate::Error::ContextLengthExceeded`] when the prompt plus `max_tokens`
    /// does not fit, [`crate::Error::EmptyPrompt`], [`crate::Error::TokenOutOfRange`],
    /// or [`crate::Error::Stopped`] when the model is shutting down.
    fn generate(&self, request: GenerateRequest) -> Result<GenerationStream>;
}
