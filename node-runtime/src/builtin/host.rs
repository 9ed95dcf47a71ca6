//! Opening a GGUF file: what stays on the host while a model sleeps
//! (metadata, tokenizer, chat template, where each tensor lies), and
//! materializing its weights on the device when it wakes.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use candle_core::quantized::gguf_file::Content;
use greenthread_core::Sha256Digest;
use sha2::{Digest, Sha256};

use super::arch::{ArchConfig, Architecture};
use super::gguf::Metadata;
use super::transformer::Transformer;
use super::weights::{TensorIndex, Weights};
use crate::chat_template::{ChatTemplate, GEMMA_TURNS};
use crate::engine::ModelInfo;
use crate::engine::WeightSource;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// How to load a model file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Context window to serve; at most what the model was trained for.
    pub context_length: Option<usize>,
    /// A chat template replacing the one in the file.
    pub chat_template: Option<String>,
    /// Refuse the file unless its SHA-256 matches.
    pub sha256: Option<Sha256Digest>,
}

/// Tokens a sequence may hold when the spec declares no `context_length`
/// (Ollama's default too): a model trained for 32k tokens would otherwise
/// reserve a KV cache of 32k tokens for every concurrent sequence.
pub const DEFAULT_CONTEXT_LENGTH: usize = 4096;

/// What a model keeps on the host, awake or asleep: a few megabytes.
pub struct ModelHost {
    /// The file it was opened from.
    pub path: PathBuf,
    pub cfg: ArchConfig,
    pub tokenizer: Tokenizer,
    pub template: Option<ChatTemplate>,
    pub info: ModelInfo,
    pub index: TensorIndex,
    /// Grammars compiled against this model's vocabulary, built on the
    /// first constrained request.
    pub grammars: std::sync::OnceLock<Result<Arc<crate::constraint::Grammars>, String>>,
}

impl ModelHost {
    pub(super) fn new(
        path: &Path,
        cfg: ArchConfig,
        tokenizer: Tokenizer,
        template: Option<ChatTemplate>,
        info: ModelInfo,
        index: TensorIndex,
    ) -> Self {
        Self { path: path.to_path_buf(), cfg, tokenizer, template, info, index, grammars: std::sync::OnceLock::new() }
    }

    /// The grammar compiler of this model's vocabulary.
    ///
    /// # Errors
    /// When llguidance cannot take the vocabulary.
    pub fn grammars(&self) -> Result<Arc<crate::constraint::Grammars>, String> {
        self.grammars
            .get_or_init(|| {
                crate::constraint::Grammars::for_vocabulary(&self.tokenizer, self.tokenizer.vocab_size()).map(Arc::new)
            })
            .clone()
    }
}

/// A model opened and materialized in one go (tools and tests).
pub struct LoadedModel {
    pub host: ModelHost,
    pub transformer: Transformer,
}

/// Opens the GGUF model at `path` and materializes its weights on `device`.
///
/// # Errors
/// As [`open_gguf`] and [`materialize`].
pub fn load_gguf(path: &Path, options: &LoadOptions, device: &Device) -> Result<LoadedModel> {
    let host = open_gguf(path, options)?;
    let transformer = materialize(&host, WeightSource::File(path), device)?;
    Ok(LoadedModel { host, transformer })
}

/// Reads the weights of `host` from `source` onto `device` and warms the
/// model up, ready to serve.
///
/// # Errors
/// [`Error::Io`] or [`Error::InvalidModel`] when the source does not hold
/// the tensors the host describes.
pub fn materialize(host: &ModelHost, source: WeightSource<'_>, device: &Device) -> Result<Transformer> {
    let started = tokio::time::Instant::now();
    let mut weights = Weights::read_all(&host.index, source, &host.path, device)?;
    let read = started.elapsed();
    let transformer = Transformer::load(host.cfg.clone(), &mut weights, device)?;
    let built = started.elapsed();
    transformer.warm_up()?;
    tracing::debug!(
        read_ms = read.as_millis() as u64,
        build_ms = (built - read).as_millis() as u64,
        warm_up_ms = (started.elapsed() - built).as_millis() as u64,
        "Weights materialized"
    );
    Ok(transformer)
}

/// Opens the GGUF model at `path`: verifies it (if `options.sha256` is set),
/// reads its metadata, tokenizer, chat template and tensor layout, but no weights.
///
/// # Errors
/// [`Error::Io`] when it cannot be read, [`Error::DigestMismatch`] when it
/// fails verification, [`Error::InvalidModel`] when it is not a model this
/// engine can run, [`Error::Template`] when a configured chat template does
/// not compile.
pub fn open_gguf(path: &Path, options: &LoadOptions) -> Result<ModelHost> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    if let Some(expected) = &options.sha256 {
        let actual = sha256_file(path).map_err(io)?;
        if actual != expected.as_str() {
            return Err(Error::DigestMismatch { path: path.to_path_buf(), expected: expected.to_string(), actual });
        }
    }
    let content = read_content(path)?;
    let md = Metadata::new(&content.metadata).map_err(|e| Error::invalid(path, e))?;
    let cfg = ArchConfig::from_metadata(&md).map_err(|e| Error::invalid(path, e))?;
    let tokenizer = Tokenizer::new(md.tokenizer_spec().map_err(|e| Error::invalid(path, e))?)
        .map_err(|e| Error::invalid(path, e))?;
    let index = TensorIndex::new(&content, path)?;
    chat_host(ChatParts {
        path,
        cfg,
        tokenizer,
        index,
        template: md.opt_str("tokenizer.chat_template").ok().flatten().map(str::to_owned),
        description: md.opt_str("general.name").ok().flatten().map(str::to_owned),
        options,
    })
}

/// What a model file gives a chat model's host, whatever its format.
pub(super) struct ChatParts<'a> {
    pub path: &'a Path,
    pub cfg: ArchConfig,
    pub tokenizer: Tokenizer,
    pub index: TensorIndex,
    /// The file's own chat template, if it has one.
    pub template: Option<String>,
    /// The file's name for the model.
    pub description: Option<String>,
    pub options: &'a LoadOptions,
}

/// A chat model's host: the tokenizer checked against the embeddings, the
/// context served, and the chat template — the configured one, else the
/// file's, else the architecture's known turns. A broken template in the
/// file is logged and skipped: the model still serves completions.
///
/// # Errors
/// [`Error::InvalidModel`] when the embeddings are missing or smaller than
/// the vocabulary, or the spec's context is too long; [`Error::Template`]
/// when a configured template does not compile.
pub(super) fn chat_host(parts: ChatParts<'_>) -> Result<ModelHost> {
    let ChatParts { path, cfg, tokenizer, index, template, description, options } = parts;
    let embedding_rows =
        index.rows("token_embd.weight").ok_or_else(|| Error::invalid(path, "the token embeddings are missing"))?;
    if tokenizer.vocab_size() > embedding_rows {
        return Err(Error::invalid(
            path,
            format!("the tokenizer has {} tokens but the embeddings only {embedding_rows}", tokenizer.vocab_size()),
        ));
    }
    let context_length = serve_context(path, &cfg, options)?;
    let (bos, eos) = (tokenizer.bos_text(), tokenizer.eos_text());
    let template = match (&options.chat_template, template, cfg.arch) {
        (Some(configured), _, _) => Some(ChatTemplate::new(configured, bos, eos)?),
        (None, Some(source), _) => compile_or_skip(path, &source, bos, eos),
        (None, None, Architecture::Gemma3) => compile_or_skip(path, GEMMA_TURNS, bos, eos),
        (None, None, _) => None,
    };
    let info = ModelInfo {
        kind: greenthread_core::ModelKind::Chat,
        architecture: cfg.arch.as_str().to_owned(),
        description,
        context_length,
        // The tokenizer may know fewer tokens than the embeddings have rows (padding rows).
        vocab_size: tokenizer.vocab_size(),
        weight_bytes: index.total_bytes(),
        has_chat_template: template.is_some(),
        tool_calls: template.as_ref().and_then(ChatTemplate::tool_format).is_some(),
        embedding_dimensions: None,
    };
    Ok(ModelHost::new(path, cfg, tokenizer, template, info, index))
}

fn compile_or_skip(path: &Path, source: &str, bos: &str, eos: &str) -> Option<ChatTemplate> {
    ChatTemplate::new(source, bos, eos)
        .inspect_err(|e| {
            tracing::warn!(path = %path.display(), error = %e, "The model's chat template does not compile; chat is disabled");
        })
        .ok()
}

/// The context a model serves: what its spec declares, at most what it was
/// trained for; [`DEFAULT_CONTEXT_LENGTH`] where the spec is silent.
///
/// # Errors
/// [`Error::InvalidModel`] when the spec asks for more than the model was trained for.
fn serve_context(path: &Path, cfg: &ArchConfig, options: &LoadOptions) -> Result<usize> {
    match options.context_length {
        None => Ok(cfg.context_length.min(DEFAULT_CONTEXT_LENGTH)),
        Some(c) if c <= cfg.context_length => Ok(c),
        Some(c) => Err(Error::invalid(
            path,
            format!("context_length {c} exceeds the {} tokens the model was trained for", cfg.context_length),
        )),
    }
}

/// The GGUF header and metadata of the file at `path`. A file that does not
/// start with the GGUF magic is refused without saying what it starts with:
/// an error must never show a file's contents.
fn read_content(path: &Path) -> Result<Content> {
    let mut reader = BufReader::new(File::open(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?);
    let mut magic = [0u8; 4];
    let starts_right = Read::read_exact(&mut reader, &mut magic).is_ok() && &magic == b"GGUF";
    if !starts_right {
        return Err(Error::invalid(path, "not a GGUF file (it does not start with the GGUF magic)"));
    }
    Seek::rewind(&mut reader).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    // candle's reader panics on some damaged headers (a `general.alignment`
    // of 0 divides by it): such a file is refused, not allowed to panic.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Content::read(&mut reader)))
        .map_err(|_| Error::invalid(path, "not a readable GGUF file: its header is damaged"))?
        .map_err(|e| Error::invalid(path, format!("not a readable GGUF file: {e}")))
}

/// Reads only the architecture of the GGUF file at `path` (its metadata).
///
/// # Errors
/// [`Error::Io`], or [`Error::InvalidModel`] for a file or an architecture
/// this engine does not read.
pub fn read_arch(path: &Path) -> Result<ArchConfig> {
    let content = read_content(path)?;
    let md = Metadata::new(&content.metadata).map_err(|e| Error::invalid(path, e))?;
    ArchConfig::from_metadata(&md).map_err(|e| Error::invalid(path, e))
}

/// Reads only the tokenizer of the GGUF file at `path`.
///
/// # Errors
/// As [`load_gguf`], for the file and its tokenizer metadata.
pub fn read_tokenizer(path: &Path) -> Result<Tokenizer> {
    let content = read_content(path)?;
    let md = Metadata::new(&content.metadata).map_err(|e| Error::invalid(path, e))?;
    Tokenizer::new(md.tokenizer_spec().map_err(|e| Error::invalid(path, e))?).map_err(|e| Error::invalid(path, e))
}

/// SHA-256 of a file, lowercase hex.
///
/// # Errors
/// When the file cannot be read.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::tiny_model::TinyModel;

    #[test]
    fn a_model_trained_for_more_serves_the_default_context_unless_its_spec_declares_one() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("long.gguf");
        TinyModel { context_length: 32768, ..TinyModel::qwen2() }.write(&path).unwrap_or_else(|e| panic!("{e}"));
        let open = |context_length| {
            let options = LoadOptions { context_length, chat_template: None, sha256: None };
            open_gguf(&path, &options).map(|host| host.info.context_length)
        };
        assert_eq!(open(None).ok(), Some(DEFAULT_CONTEXT_LENGTH));
        assert_eq!(open(Some(32768)).ok(), Some(32768), "a declared context is served whole");
        assert!(open(Some(32769)).is_err(), "never more than it was trained for");
    }
}
