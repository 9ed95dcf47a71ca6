//! The builtin engine: GGUF models and Hugging Face checkpoints run with
//! candle on the CPU (or CUDA).
//! A model is opened once (tokenizer, template, tensor layout stay on the
//! host) and then wakes and sleeps: waking materializes its weights and
//! starts its worker thread, sleeping stops the worker and frees every
//! device byte.

mod activation;
pub mod arch;
pub mod gguf;
pub mod hf;
mod host;
pub mod kv_cache;
pub mod plan;
mod prefix;
pub mod transformer;
pub mod weights;
mod worker;

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use greenthread_core::{ChatMessage, ModelSpec};
use tokio::sync::mpsc;

pub use self::host::{
    LoadOptions, LoadedModel, ModelHost, load_gguf, materialize, open_gguf, read_arch, read_tokenizer, sha256_file,
};
use self::worker::{Inbox, NewSequence, WorkerLimits};
use crate::engine::WeightSource;
use crate::engine::{GenerateRequest, GenerationStream, ModelInfo, ModelInstance};
use crate::sampler::Sampler;
use crate::{Error, Result};

/// Sequences one model generates at once unless its spec says.
pub const DEFAULT_MAX_SEQUENCES: usize = greenthread_core::engine::DEFAULT_BUILTIN_SEQUENCES as usize;

/// The builtin engine.
#[derive(Debug, Clone)]
pub struct BuiltinEngine {
    device: candle_core::Device,
    max_sequences: usize,
    /// Sequences that may wait beyond those running; by default
    /// [`QUEUE_PER_SEQUENCE`](greenthread_core::model_spec::QUEUE_PER_SEQUENCE) per running one.
    max_queue: Option<usize>,
}

impl BuiltinEngine {
    /// An engine on the CPU.
    pub fn cpu() -> Self {
        Self { device: candle_core::Device::Cpu, max_sequences: DEFAULT_MAX_SEQUENCES, max_queue: None }
    }

    /// An engine on the first CUDA device when this build has candle's CUDA
    /// backend and one is present; otherwise on the CPU, saying so in the log.
    pub fn best_available() -> Self {
        #[cfg(feature = "cuda")]
        match candle_core::Device::new_cuda(0) {
            Ok(device) => return Self { device, max_sequences: DEFAULT_MAX_SEQUENCES, max_queue: None },
            Err(e) => {
                // candle appends a backtrace to the message when RUST_BACKTRACE is set; the first line says it all.
                let error = e.to_string();
                let error = error.lines().next().unwrap_or_default();
                tracing::warn!(%error, "No usable CUDA device; running models on the CPU");
            }
        }
        Self::cpu()
    }

    pub fn with_max_sequences(mut self, n: usize) -> Self {
        self.max_sequences = n.max(1);
        self
    }

    /// Sequences one model holds at once, running and waiting: what a
    /// replica's admission allows (its queue beside its batch).
    fn places(&self) -> usize {
        let queue =
            self.max_queue.unwrap_or(self.max_sequences * greenthread_core::model_spec::QUEUE_PER_SEQUENCE as usize);
        self.max_sequences + queue
    }

    pub fn device(&self) -> &candle_core::Device {
        &self.device
    }

    pub fn device_name(&self) -> &'static str {
        if self.device.is_cuda() { "cuda" } else { "cpu" }
    }

    pub fn is_cpu(&self) -> bool {
        self.device.is_cpu()
    }

    /// Opens `spec`'s model from the GGUF file at `path`, asleep.
    ///
    /// # Errors
    /// As [`open_gguf`].
    pub fn open(&self, spec: &ModelSpec, path: &std::path::Path) -> Result<BuiltinModel> {
        Ok(self.asleep(spec, open_gguf(path, &Self::options(spec))?))
    }

    /// Opens `spec`'s model from the packed Hugging Face directory at `path`
    /// (its small files in `files`), asleep.
    ///
    /// # Errors
    /// As [`hf::open_hf`].
    pub fn open_hf(
        &self,
        spec: &ModelSpec,
        path: &std::path::Path,
        files: &std::collections::BTreeMap<String, String>,
    ) -> Result<BuiltinModel> {
        Ok(self.asleep(spec, hf::open_hf(path, files, &Self::options(spec))?))
    }

    fn options(spec: &ModelSpec) -> LoadOptions {
        LoadOptions {
            context_length: spec.context_length.map(|c| c as usize),
            chat_template: spec.chat_template.clone(),
            sha256: None,
        }
    }

    fn asleep(&self, spec: &ModelSpec, host: ModelHost) -> BuiltinModel {
        let mut engine = match spec.scaling.max_concurrency {
            Some(n) => self.clone().with_max_sequences(n as usize),
            None => self.clone(),
        };
        engine.max_queue = spec.scaling.max_queue.map(|n| n as usize);
        BuiltinModel::asleep(host, engine, spec.name.as_str())
    }
}

/// A running worker and what it holds.
struct Awake {
    sender: mpsc::Sender<Inbox>,
    thread: JoinHandle<()>,
    weight_bytes: usize,
    limits: WorkerLimits,
}

/// A model of the builtin engine: always able to tokenize, able to generate
/// while awake.
pub struct BuiltinModel {
    host: Arc<ModelHost>,
    engine: BuiltinEngine,
    name: String,
    awake: Mutex<Option<Awake>>,
    /// What the worker publishes; the model's own, so its counters outlive a sleep.
    gauges: Arc<worker::Gauges>,
    /// Places for sequences, running and waiting; a generation holds one
    /// until its stream is dropped.
    places: Arc<tokio::sync::Semaphore>,
}

impl BuiltinModel {
    fn asleep(host: ModelHost, engine: BuiltinEngine, name: &str) -> Self {
        let places = Arc::new(tokio::sync::Semaphore::new(engine.places()));
        Self {
            host: Arc::new(host),
            engine,
            name: name.to_owned(),
            awake: Mutex::new(None),
            gauges: Arc::default(),
            places,
        }
    }

    /// A model already materialized, awake at once (tools and tests).
    ///
    /// # Errors
    /// When the worker thread cannot be spawned.
    pub fn start(loaded: LoadedModel, max_sequences: usize, name: &str) -> Result<Self> {
        let engine = BuiltinEngine::cpu().with_max_sequences(max_sequences);
        let model = Self::asleep(loaded.host, engine, name);
        model.start_worker(loaded.transformer)?;
        Ok(model)
    }

    pub fn host(&self) -> &ModelHost {
        &self.host
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Awake>> {
        // The guarded value is replaced whole, so a panic elsewhere cannot leave it half-written.
        self.awake.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn is_awake(&self) -> bool {
        self.lock().is_some()
    }

    /// Device bytes held now: the weights while awake, nothing asleep.
    pub fn device_bytes(&self) -> usize {
        self.lock().as_ref().map_or(0, |a| a.weight_bytes + self.kv_reserve())
    }

    /// The KV cache the model may grow to: every sequence it runs at once
    /// (`max_sequences`) at its whole context. Counted in its footprint, so
    /// admission never lets the caches outgrow the device (or, on a CPU node,
    /// resident memory); more sequences wait in the queue.
    pub fn kv_reserve(&self) -> usize {
        let per_token = self.host.cfg.kv_bytes_per_token(kv_cache::KV_DTYPE.size_in_bytes()) as usize;
        per_token * self.host.info.context_length * self.engine.max_sequences
    }

    /// Materializes the weights from `source` and starts serving. Waking an
    /// awake model does nothing.
    ///
    /// # Errors
    /// When the weights cannot be read or the worker cannot start.
    pub fn wake(&self, source: WeightSource<'_>) -> Result<()> {
        if self.is_awake() {
            return Ok(());
        }
        let transformer = materialize(&self.host, source, &self.engine.device)?;
        self.start_worker(transformer)
    }

    fn start_worker(&self, transformer: transformer::Transformer) -> Result<()> {
        // New sequences are bounded by the places, sampled tokens coming
        // back by the running sequences: a send never finds it full.
        let (sender, rx) = mpsc::channel(self.engine.places() + self.engine.max_sequences);
        let limits =
            WorkerLimits { max_sequences: self.engine.max_sequences, context_length: self.host.info.context_length };
        let weight_bytes = transformer.weight_bytes;
        let host = self.host.clone();
        let inbox = sender.downgrade();
        let published = self.gauges.clone();
        let thread = std::thread::Builder::new()
            .name(format!("gt-model-{}", self.name))
            .spawn(move || worker::run(transformer, host, rx, inbox, limits, published))
            .map_err(|e| Error::Inference(format!("cannot start the model's worker thread: {e}")))?;
        *self.lock() = Some(Awake { sender, thread, weight_bytes, limits });
        Ok(())
    }

    /// Stops taking work, lets the worker finish what it has, and frees
    /// every device byte: weights, KV caches, scratch buffers.
    ///
    /// # Errors
    /// When the worker thread panicked.
    pub fn sleep(&self) -> Result<()> {
        let Some(awake) = self.lock().take() else { return Ok(()) };
        drop(awake.sender);
        awake.thread.join().map_err(|_| Error::Inference("the model's worker thread panicked".into()))?;
        release_freed_memory();
        Ok(())
    }
}

/// Hands memory freed by a sleeping model back to the operating system:
/// glibc keeps freed heap pages mapped until asked.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only returns free pages to the kernel; it is safe
    // to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl crate::engine::ServedModel for BuiltinModel {
    fn wake(&self, source: WeightSource<'_>) -> Result<()> {
        BuiltinModel::wake(self, source)
    }

    fn sleep(&self) -> Result<()> {
        BuiltinModel::sleep(self)
    }

    fn is_awake(&self) -> bool {
        BuiltinModel::is_awake(self)
    }

    fn device_bytes(&self) -> usize {
        BuiltinModel::device_bytes(self)
    }

    fn footprint(&self) -> usize {
        self.host.index.loaded_bytes(&self.engine.device) + self.kv_reserve()
    }

    fn load(&self) -> Option<crate::engine::EngineLoad> {
        self.lock().as_ref().map(|a| self.gauges.read(a.limits))
    }
}

impl ModelInstance for BuiltinModel {
    fn info(&self) -> &ModelInfo {
        &self.host.info
    }

    fn chat_prompt(&self, messages: &[ChatMessage], tools: Option<&serde_json::Value>) -> Result<Vec<u32>> {
        let template = self.host.template.as_ref().ok_or(Error::NoChatTemplate)?;
        let text = template.render(messages, tools, true)?;
        let tokenizer = &self.host.tokenizer;
        // Templates that write `{{ bos_token }}` (Gemma's, Llama 3's) meet a
        // tokenizer that adds BOS itself: one BOS, as transformers and
        // llama.cpp's chat give.
        let bos = tokenizer.bos_text();
        let text = match text.strip_prefix(bos) {
            Some(rest) if tokenizer.adds_bos() && !bos.is_empty() => rest,
            _ => text.as_str(),
        };
        Ok(tokenizer.encode(text, true))
    }

    fn text_prompt(&self, text: &str) -> Vec<u32> {
        self.host.tokenizer.encode(text, true)
    }

    fn prompt_text(&self, tokens: &[u32]) -> String {
        self.host.tokenizer.decode_with_markup(tokens)
    }

    fn fill_in_middle(&self, before: &str, after: &str) -> Option<Vec<u32>> {
        let tokenizer = &self.host.tokenizer;
        crate::fill_in_middle::FimTokens::of(tokenizer).map(|fim| fim.prompt(tokenizer, before, after))
    }

    fn generate(&self, request: GenerateRequest) -> Result<GenerationStream> {
        let info = &self.host.info;
        let context = info.context_length;
        let prompt_len = request.prompt.len();
        if prompt_len == 0 {
            return Err(Error::EmptyPrompt);
        }
        if let Some(&bad) = request.prompt.iter().find(|&&t| t as usize >= info.vocab_size) {
            return Err(Error::TokenOutOfRange(bad));
        }
        if let Some(&(bad, _)) = request.sampling.logit_bias.iter().find(|(t, _)| *t as usize >= info.vocab_size) {
            return Err(Error::BiasOutOfRange(bad));
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
        let place = self.places.clone().try_acquire_owned().map_err(|_| Error::Busy(self.engine.places()))?;
        let (events, rx) = mpsc::channel(GenerationStream::capacity(max_tokens));
        let constraint = match &request.grammar {
            Some(grammar) => Some(self.host.grammars().and_then(|g| g.constraint(grammar)).map_err(Error::Grammar)?),
            None => None,
        };
        let sampler = Sampler::new(request.sampling, &request.prompt)
            .with_constraint(constraint)
            .with_logprobs(request.logprobs.map(usize::from));
        let guard = self.lock();
        let awake = guard.as_ref().ok_or(Error::Asleep)?;
        awake
            .sender
            .try_send(Inbox::New(NewSequence {
                prompt: request.prompt,
                sampler,
                max_tokens,
                stops: request.stop,
                events,
            }))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Error::Busy(self.engine.places()),
                mpsc::error::TrySendError::Closed(_) => Error::Stopped,
            })?;
        Ok(GenerationStream::new(rx, Some(place), prompt_len))
    }
}

#[cfg(all(test, feature = "cuda"))]
mod no_gpu {
    use super::BuiltinEngine;

    /// The GPU build where no GPU answers (on the stand-ins of
    /// `scripts/cuda-stubs.sh`, which say "no device") runs models on the
    /// CPU rather than failing to start; where a GPU answers, it takes it.
    #[test]
    fn without_a_gpu_the_gpu_build_runs_its_models_on_the_cpu() {
        let engine = BuiltinEngine::best_available();
        if std::env::var_os("GREENTHREAD_EXPECT_NO_CUDA_DEVICE").is_some() {
            assert!(engine.is_cpu(), "chose {} where no GPU exists", engine.device_name());
        } else {
            assert_eq!(engine.is_cpu(), candle_core::Device::new_cuda(0).is_err());
        }
    }
}
