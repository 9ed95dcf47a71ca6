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

use super::host::{ChatParts, LoadOptions, ModelHost, chat_host};
use crate::embed::pack;
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
    chat_host(ChatParts {
        path,
        cfg,
        tokenizer,
        index,
        template: file("chat_template.jinja")
            .map(str::to_owned)
            .or_else(|| default_template(file("tokenizer_config.json"))),
        description: config["_name_or_path"].as_str().filter(|n| !n.is_empty()).map(str::to_owned),
        options,
    })
}

/// `tokenizer_config.json`'s chat template: a string, or the entry named
/// `default` of a list of named ones.
fn default_template(tokenizer_config: Option<&str>) -> Option<String> {
    let config: Value = serde_json::from_str(tokenizer_config?).ok()?;
    match &config["chat_template"] {
        Value::String(s) => Some(s.clone()),
        Value::Array(named) => named.iter().find(|t| t["name"] == "default")?["template"].as_str().map(str::to_owned),
        _ => None,
    }
}
