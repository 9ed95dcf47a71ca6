//! Chat models from a Hugging Face directory (`config.json`,
//! `model.safetensors` in bf16, f16 or f32, `tokenizer.json`,
//! `tokenizer_config.json` with its chat template), packed into one file by
//! the node's fetch like every directory, and run by the same transformer
//! as GGUF models: the checkpoint's names and conventions are translated
//! once, when the model is opened.

pub mod config;
pub mod tensors;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::arch::Architecture;
use super::host::{LoadOptions, ModelHost, serve_context};
use crate::chat_template::{ChatTemplate, GEMMA_TURNS};
use crate::embed::pack;
use crate::engine::ModelInfo;
use crate::tokenizer::{HfTokenizerFiles, Tokenizer};
use crate::{Error, Result};

pub use config::MODEL_TYPES;

/// Whether a directory's `config.json` describes a chat model this engine runs.
pub fn is_chat_model(config: &Value) -> bool {
    config["model_type"].as_str().is_some_and(|t| MODEL_TYPES.contains(&t))
}

/// Opens the packed model directory at `path` (its small files in `files`), asleep.
///
/// # Errors
/// [`Error::InvalidModel`] when a file is missing or describes a model this
/// engine does not run, [`Error::Template`] when a configured chat template
/// does not compile.
pub fn open_hf(path: &Path, files: &BTreeMap<String, String>, options: &LoadOptions) -> Result<ModelHost> {
    let invalid = |what: String| Error::invalid(path, what);
    let file = |name: &str| files.get(name).map(String::as_str);
    let config: Value =
        serde_json::from_str(file("config.json").ok_or_else(|| invalid("the model has no config.json".into()))?)
            .map_err(|e| invalid(format!("config.json: {e}")))?;
    let cfg = config::arch_config(&config).map_err(invalid)?;
    let tokenizer = Tokenizer::from_hf(HfTokenizerFiles {
        tokenizer: file("tokenizer.json").ok_or_else(|| invalid("the model has no tokenizer.json".into()))?,
        tokenizer_config: file("tokenizer_config.json"),
        generation_config: file("generation_config.json"),
    })
    .map_err(|e| invalid(e.to_string()))?;
    let (header, data_start, file_len) = pack::header(path).map_err(|e| invalid(e.to_string()))?;
    let index = tensors::index(path, cfg.arch, &header, data_start, file_len)?;
    let embedding_rows =
        index.rows("token_embd.weight").ok_or_else(|| invalid("the checkpoint has no embed_tokens tensor".into()))?;
    if tokenizer.vocab_size() > embedding_rows {
        return Err(invalid(format!(
            "the tokenizer has {} tokens but the embeddings only {embedding_rows}",
            tokenizer.vocab_size()
        )));
    }
    let context_length = serve_context(path, &cfg, options)?;
    let template = chat_template(path, files, cfg.arch, options, &tokenizer)?;
    let info = ModelInfo {
        kind: greenthread_core::ModelKind::Chat,
        architecture: cfg.arch.as_str().to_owned(),
        description: config["_name_or_path"].as_str().filter(|n| !n.is_empty()).map(str::to_owned),
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

/// The configured template, else `chat_template.jinja`, else
/// `tokenizer_config.json`'s (a string, or a list whose `default` entry
/// counts), else Gemma's known turns. A broken template is logged and
/// skipped: the model still serves completions.
fn chat_template(
    path: &Path,
    files: &BTreeMap<String, String>,
    arch: Architecture,
    options: &LoadOptions,
    tokenizer: &Tokenizer,
) -> Result<Option<ChatTemplate>> {
    let (bos, eos) = (tokenizer.bos_text(), tokenizer.eos_text());
    if let Some(source) = &options.chat_template {
        return ChatTemplate::new(source, bos, eos).map(Some);
    }
    let tokenizer_config: Value =
        files.get("tokenizer_config.json").and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
    let from_config = match &tokenizer_config["chat_template"] {
        Value::String(s) => Some(s.as_str()),
        Value::Array(named) => named.iter().find(|t| t["name"] == "default").and_then(|t| t["template"].as_str()),
        _ => None,
    };
    let source = match (files.get("chat_template.jinja").map(String::as_str).or(from_config), arch) {
        (Some(source), _) => source,
        (None, Architecture::Gemma3) => GEMMA_TURNS,
        (None, _) => return Ok(None),
    };
    match ChatTemplate::new(source, bos, eos) {
        Ok(t) => Ok(Some(t)),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "The model's chat template does not compile; chat is disabled");
            Ok(None)
        }
    }
}
