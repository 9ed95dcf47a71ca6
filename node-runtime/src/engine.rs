//! The engine seam: what the gateway needs from a model, so the builtin
//! engine and external ones (vLLM, llama.cpp's server, run by the node,
//! whose requests are proxied to [`ModelInstance::endpoint`]) are
//! interchangeable behind `Arc<dyn ModelInstance>`.

use greenthread_core::{ChatMessage, FinishReason, ModelKind, SamplingParams, Usage};
use tokio::sync::mpsc;

use crate::Result;

/// Facts about a loaded model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// What the model does, as its artifact shows.
    pub kind: ModelKind,
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
    /// The size of its vectors, for an embedding model; `None` for a chat model.
    pub embedding_dimensions: Option<usize>,
}

/// How to transcribe.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TranscribeOptions {
    /// ISO-639-1 code; `None`: detected from the first window.
    pub language: Option<String>,
    /// Into English instead of the spoken language.
    pub translate: bool,
    /// Text that came before, to keep names and style.
    pub prompt: Option<String>,
    /// 0: greedy.
    pub temperature: f32,
}

/// A stretch of the transcript with its time in the audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub id: usize,
    pub start: f64,
    pub end: f64,
    pub text: String,
    pub tokens: Vec<u32>,
    pub avg_logprob: f64,
    /// The probability that the window holds no speech.
    pub no_speech_prob: f64,
    pub temperature: f32,
}

/// What was said.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub text: String,
    /// The language heard (or asked for), as its ISO code.
    pub language: String,
    /// Seconds of audio.
    pub duration: f64,
    pub segments: Vec<Segment>,
}

/// A voice a text-to-speech model speaks with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voice {
    /// The name a request gives as `voice`.
    pub id: String,
    /// The language it speaks, e.g. `en_US`.
    pub language: Option<String>,
}

/// What a text-to-speech model offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Speaker {
    /// Samples per second of the audio it makes (mono).
    pub sample_rate: u32,
    pub voices: Vec<Voice>,
}

/// How to speak.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeakOptions {
    /// One of [`Speaker::voices`].
    pub voice: String,
    /// 1 is the voice's own pace; 2 twice as fast.
    pub speed: f32,
}

/// Documents scored against a query.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// One per document, in their order.
    pub scores: Vec<f32>,
    /// Tokens the model read.
    pub tokens: usize,
}

/// One input of an embeddings request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbeddingInput {
    Text(String),
    /// Token ids of the model's own vocabulary.
    Tokens(Vec<u32>),
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
    pub grammar: Option<std::sync::Arc<greenthread_core::grammar::OutputGrammar>>,
    /// Report each token's log-probability with this many alternatives.
    pub logprobs: Option<u8>,
}

pub use greenthread_core::generation::{TokenLogprob, TokenText};

/// One event of a running generation.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerationEvent {
    /// More output text (never empty).
    Text(String),
    /// The log-probabilities of the next token, sent before its text; only
    /// when the request asked for them.
    Logprob(TokenLogprob),
    /// The generation ended normally.
    Done { finish: FinishReason, usage: Usage },
    /// The generation failed part-way; `usage` counts what was produced.
    Failed { message: String, usage: Usage },
}

/// The events of one generation. Dropping it cancels the generation and
/// gives back its place in the model.
#[derive(Debug)]
pub struct GenerationStream {
    rx: mpsc::Receiver<GenerationEvent>,
    _place: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The span of the stage the generation is in, for traces.
    stage: Stage,
}

/// Where a generation is: its prompt being read (and its wait for a place
/// in the batch), then its tokens being generated.
#[derive(Debug)]
enum Stage {
    /// `span` is held, not read: it lasts as long as the stage.
    Prefill {
        parent: tracing::Span,
        _span: tracing::Span,
    },
    Decode(tracing::Span),
    Ended,
}

impl GenerationStream {
    /// A generation of a `prompt_tokens` prompt; its spans are children of the current span.
    pub(crate) fn new(
        rx: mpsc::Receiver<GenerationEvent>,
        place: Option<tokio::sync::OwnedSemaphorePermit>,
        prompt_tokens: usize,
    ) -> Self {
        let parent = tracing::Span::current();
        // Counts go out as integers: OpenTelemetry has no unsigned attribute,
        // and an unsigned one is exported as a string.
        let prompt_tokens = i64::try_from(prompt_tokens).unwrap_or(i64::MAX);
        let span = tracing::info_span!(parent: &parent, "prefill", prompt_tokens);
        Self { rx, _place: place, stage: Stage::Prefill { parent, _span: span } }
    }

    /// Moves the trace to the stage `event` shows: the first output ends
    /// the prefill, the end of the generation ends the decode.
    fn follow(&mut self, event: Option<&GenerationEvent>) {
        match event {
            Some(GenerationEvent::Text(_) | GenerationEvent::Logprob(_)) => {
                if let Stage::Prefill { parent, .. } = &self.stage {
                    let decode =
                        tracing::info_span!(parent: parent, "decode", generated_tokens = tracing::field::Empty);
                    self.stage = Stage::Decode(decode);
                }
            }
            Some(GenerationEvent::Done { usage, .. } | GenerationEvent::Failed { usage, .. }) => {
                if let Stage::Decode(span) = &self.stage {
                    span.record("generated_tokens", i64::from(usage.completion_tokens));
                }
                self.stage = Stage::Ended;
            }
            None => self.stage = Stage::Ended,
        }
    }

    /// Room for every event a generation of `max_tokens` can send: per token
    /// its text and its log-probabilities, then a last piece of text and the
    /// end. The worker never waits on a slow reader, yet the channel is bounded.
    pub(crate) fn capacity(max_tokens: u32) -> usize {
        2 * max_tokens as usize + 3
    }

    /// The next event; `None` after `Done` or `Failed`.
    pub async fn next(&mut self) -> Option<GenerationEvent> {
        let event = self.rx.recv().await;
        self.follow(event.as_ref());
        event
    }
}

/// Where an external engine serves a model's OpenAI API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineEndpoint {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The `"model"` the engine answers to.
    pub model: String,
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

    /// The fill-in-the-middle prompt of code `before` and `after` a gap;
    /// `None` when the model has no FIM markers.
    fn fill_in_middle(&self, before: &str, after: &str) -> Option<Vec<u32>> {
        let _ = (before, after);
        None
    }

    /// The text of a prompt given as token ids, control tokens as their
    /// markup (what `echo` returns); empty where the model has no vocabulary here.
    fn prompt_text(&self, tokens: &[u32]) -> String {
        let _ = tokens;
        String::new()
    }

    /// Starts generating.
    ///
    /// # Errors
    /// [`crate::Error::ContextLengthExceeded`] when the prompt plus `max_tokens`
    /// does not fit, [`crate::Error::EmptyPrompt`], [`crate::Error::TokenOutOfRange`],
    /// or [`crate::Error::Stopped`] when the model is shutting down.
    fn generate(&self, request: GenerateRequest) -> Result<GenerationStream>;

    /// Where an external engine serves this model's OpenAI API while it is
    /// awake; `None` for a model this process runs itself.
    fn endpoint(&self) -> Option<EngineEndpoint> {
        None
    }

    /// The token ids an embedding model reads for `input` (framed and cut to
    /// its window).
    ///
    /// # Errors
    /// [`crate::Error::WrongKind`] for a chat model, [`crate::Error::TokenOutOfRange`].
    fn embedding_tokens(&self, input: EmbeddingInput) -> Result<Vec<u32>> {
        let _ = input;
        Err(crate::Error::WrongKind("this is a chat model; it does not serve /v1/embeddings".into()))
    }

    /// How relevant each of `documents` is to `query` (higher is more), and
    /// the tokens read. Runs on the calling thread: call it from a blocking task.
    ///
    /// # Errors
    /// [`crate::Error::WrongKind`] for a model that does not rerank,
    /// [`crate::Error::Asleep`].
    fn rerank(&self, query: &str, documents: &[String]) -> Result<Scored> {
        let _ = (query, documents);
        let kind = self.info().kind;
        Err(crate::Error::WrongKind(format!("this {kind} model does not serve /v1/rerank")))
    }

    /// What `samples` (mono, 16 kHz) say, each segment given to
    /// `on_segment` as soon as it is decoded. Runs on the calling thread:
    /// call it from a blocking task.
    ///
    /// # Errors
    /// [`crate::Error::WrongKind`] for a model that does not hear,
    /// [`crate::Error::Invalid`] for an unknown language, [`crate::Error::Asleep`].
    fn transcribe(
        &self,
        samples: &[f32],
        options: &TranscribeOptions,
        on_segment: &mut dyn FnMut(&Segment),
    ) -> Result<Transcript> {
        let _ = (samples, options, on_segment);
        let kind = self.info().kind;
        Err(crate::Error::WrongKind(format!("this {kind} model does not serve /v1/audio/transcriptions")))
    }

    /// The voices of a text-to-speech model and the rate of its audio; `None` for other kinds.
    fn speaker(&self) -> Option<Speaker> {
        None
    }

    /// Speaks `text`, handing each stretch of audio (mono, at
    /// [`Speaker::sample_rate`], in [-1, 1]) to `on_audio` as soon as it is
    /// made; stops early when `on_audio` returns false. Returns the samples
    /// spoken. Runs on the calling thread: call it from a blocking task.
    ///
    /// # Errors
    /// [`crate::Error::WrongKind`] for a model that does not speak,
    /// [`crate::Error::Invalid`] for an unknown voice or nothing to say, [`crate::Error::Asleep`].
    fn speak(&self, text: &str, options: &SpeakOptions, on_audio: &mut dyn FnMut(&[f32]) -> bool) -> Result<usize> {
        let _ = (text, options, on_audio);
        let kind = self.info().kind;
        Err(crate::Error::WrongKind(format!("this {kind} model does not serve /v1/audio/speech")))
    }

    /// One vector per input, from [`ModelInstance::embedding_tokens`]. Runs
    /// on the calling thread: call it from a blocking task.
    ///
    /// # Errors
    /// [`crate::Error::WrongKind`] for a chat model, [`crate::Error::Asleep`].
    fn embed(&self, inputs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let _ = inputs;
        Err(crate::Error::WrongKind("this is a chat model; it does not serve /v1/embeddings".into()))
    }
}

/// What an engine is doing now, for the metrics: the sequences in its
/// batch, those waiting for a place in it, and its KV cache's use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineLoad {
    /// Sequences in the batch (generating or prefilling).
    pub running: usize,
    /// Sequences waiting for a place in the batch.
    pub waiting: usize,
    /// Tokens held in the KV caches of the running sequences.
    pub kv_tokens: usize,
    /// Tokens the KV caches may hold at most: sequences × context window.
    pub kv_capacity: usize,
    /// Prompt tokens looked up in the prefix cache since the model was
    /// opened in this process (counts only grow).
    pub prefix_queried_tokens: u64,
    /// Of those, tokens whose keys and values were reused from the cache.
    pub prefix_hit_tokens: u64,
}

/// Where a model's weights are read from when it wakes: the node's RAM
/// tier or its disk tier. Any engine reads one of these.
#[derive(Debug, Clone, Copy)]
pub enum WeightSource<'a> {
    /// The weight file's bytes in memory.
    Memory(&'a [u8]),
    /// The weight file on disk.
    File(&'a std::path::Path),
}

impl WeightSource<'_> {
    /// The tensors of a safetensors file (a packed model directory) on `device`.
    ///
    /// # Errors
    /// When the bytes or the file are not safetensors.
    pub fn safetensors(
        self,
        device: &candle_core::Device,
    ) -> Result<std::collections::HashMap<String, candle_core::Tensor>> {
        Ok(match self {
            Self::Memory(bytes) => candle_core::safetensors::load_buffer(bytes, device)?,
            Self::File(path) => candle_core::safetensors::load(path, device)?,
        })
    }
}

/// A model a node holds: served while awake, its weights dropped asleep.
pub trait ServedModel: ModelInstance {
    /// Materializes the weights from `source` and starts serving; waking an
    /// awake model does nothing.
    ///
    /// # Errors
    /// When the weights cannot be read or do not fit the model.
    fn wake(&self, source: WeightSource<'_>) -> Result<()>;

    /// Frees every device byte the model holds.
    ///
    /// # Errors
    /// When the model's worker failed.
    fn sleep(&self) -> Result<()>;

    fn is_awake(&self) -> bool;

    /// Device bytes held now.
    fn device_bytes(&self) -> usize;

    /// Device bytes the model may hold awake, which admission counts: its
    /// weights, and the KV cache it may grow to where the engine keeps one.
    fn footprint(&self) -> usize {
        self.info().weight_bytes
    }

    /// What the engine is doing now, where it can tell (the builtin engine).
    fn load(&self) -> Option<EngineLoad> {
        None
    }
}
