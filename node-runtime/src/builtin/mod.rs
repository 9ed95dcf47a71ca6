//! The builtin engine: GGUF models run with candle on the CPU (or CUDA).

mod activation;
pub mod arch;
pub mod gguf;
pub mod kernels;
pub mod kv_cache;
mod load;
pub mod plan;
pub mod transformer;
pub mod weights;
mod worker;

use std::sync::Arc;

use greenthread_core::{ChatMessage, ModelSpec};
use tokio::sync::mpsc;

pub use self::load::{LoadOptions, LoadedModel, load_gguf, read_tokenizer, sha256_file};
use self::worker::{NewSequence, WorkerLimits};
use crate::chat_template::ChatTemplate;
use crate::engine::{Engine, GenerateRequest, GenerationStream, ModelInfo, ModelInstance};
use crate::sampler::Sampler;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Sequences one model generates at once by default. Decoding is bound by
/// reading the weights, so batching more sequences into each pass is nearly
/// free until the matrix kernels become compute bound.
pub const DEFAULT_MAX_SEQUENCES: usize = 16;

/// The builtin engine.
#[derive(Debug, Clone)]
pub struct BuiltinEngine {
    device: candle_core::Device,
    max_sequences: usize,
}

impl BuiltinEngine {
    /// An engine on the CPU.
    pub fn cpu() -> Self {
        Self { device: candle_core::Device::Cpu, max_sequences: DEFAULT_MAX_SEQUENCES }
    }

    /// An engine on the first CUDA device when this build has CUDA and one is
    /// present; otherwise on the CPU, saying so in the log.
    pub fn best_available() -> Self {
        #[cfg(feature = "cuda")]
        match candle_core::Device::new_cuda(0) {
            Ok(device) => {
                return Self { device, max_sequences: DEFAULT_MAX_SEQUENCES };
            }
            Err(e) => {
                tracing::warn!(error = %e, "No usable CUDA device; running models on the CPU")
            }
        }
        Self::cpu()
    }

    pub fn with_max_sequences(mut self, n: usize) -> Self {
        self.max_sequences = n.max(1);
        self
    }

    pub fn device_name(&self) -> &'static str {
        if self.device.is_cuda() { "cuda" } else { "cpu" }
    }
}

impl Engine for BuiltinEngine {
    fn load(&self, spec: &ModelSpec) -> Result<Arc<dyn ModelInstance>> {
        let options = LoadOptions {
            context_length: spec.context_length.map(|c| c as usize),
            chat_template: spec.chat_template.clone(),
            sha256: spec.sha256.clone(),
        };
        let loaded = load_gguf(spec.artifact.local_path(), &options, &self.device)?;
        Ok(Arc::new(BuiltinModel::start(loaded, self.max_sequences, spec.name.as_str())?))
    }
}

/// A model served by a worker thread of the builtin engine.
pub struct BuiltinModel {
    info: ModelInfo,
    tokenizer: Arc<Tokenizer>,
    template: Option<ChatTemplate>,
    sender: mpsc::UnboundedSender<NewSequence>,
}

impl BuiltinModel {
    /// Starts the worker thread for `loaded`.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start(loaded: LoadedModel, max_sequences: usize, name: &str) -> Result<Self> {
        let (sender, rx) = mpsc::unbounded_channel();
        let tokenizer = Arc::new(loaded.tokenizer);
        let limits = WorkerLimits { max_sequences, context_length: loaded.info.context_length };
        let worker_tokenizer = tokenizer.clone();
        let transformer = loaded.transformer;
        std::thread::Builder::new()
            .name(format!("gt-model-{name}"))
            .spawn(move || worker::run(transformer, worker_tokenizer, rx, limits))
            .map_err(|e| Error::Inference(format!("cannot start the model's worker thread: {e}")))?;
        Ok(Self { info: loaded.info, tokenizer, template: loaded.template, sender })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
}

impl ModelInstance for BuiltinModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn chat_prompt(&self, messages: &[ChatMessage], tools: Option<&serde_json::Value>) -> Result<Vec<u32>> {
        let template = self.template.as_ref().ok_or(Error::NoChatTemplate)?;
        let text = template.render(messages, tools, true)?;
        Ok(self.tokenizer.encode(&text, true))
    }

    fn text_prompt(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(text, true)
    }

    fn generate(&self, request: GenerateRequest) -> Result<GenerationStream> {
        let context = self.info.context_length;
        let prompt_len = request.prompt.len();
        if prompt_len == 0 {
            return Err(Error::EmptyPrompt);
        }
        if let Some(&bad) = request.prompt.iter().find(|&&t| t as usize >= self.info.vocab_size) {
            return Err(Error::TokenOutOfRange(bad));
        }
        let room = context.saturating_sub(prompt_len);
        let max_tokens = match request.max_tokens {
            Some(m) if m as usize <= room => m,
            None if room > 0 => room as u32,
            requested => {
                return Err(Error::ContextLengthExceeded {
                    prompt: prompt_len,
                    requested: requested.map_or(1, |m| m as usize),
                    context,
                });
            }
        };
        let (events, rx) = mpsc::unbounded_channel();
        let sampler = Sampler::new(request.sampling, &request.prompt);
        self.sender
            .send(NewSequence { prompt: request.prompt, sampler, max_tokens, stops: request.stop, events })
            .map_err(|_| Error::Stopped)?;
        Ok(GenerationStream::new(rx))
    }
}
