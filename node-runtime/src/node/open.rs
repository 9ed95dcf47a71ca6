//! Which engine opens a cached model file, by what the file holds.

use std::path::Path;
use std::sync::Arc;

use greenthread_core::ModelSpec;

use crate::ServedModel;
use crate::builtin::BuiltinEngine;
use crate::embed::{EmbeddingModel, pack};

/// Opens the cached file of `spec`: a GGUF chat model, or a packed model
/// directory (a Llama, Qwen or Gemma chat model, a BERT embedding model or
/// cross-encoder, a Whisper model, or a Piper voice),
/// refused when the spec declares another kind than the artifact's.
pub fn open_model(engine: &BuiltinEngine, spec: &ModelSpec, path: &Path) -> crate::Result<Arc<dyn ServedModel>> {
    let model: Arc<dyn ServedModel> = if pack::is_safetensors(path) {
        let (files, data_bytes) = pack::unpack_files(path).map_err(|e| crate::Error::invalid(path, e))?;
        let config = files.get("config.json").and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok());
        let config = config.unwrap_or_default();
        match config["model_type"].as_str() {
            _ if crate::builtin::hf::is_chat_model(&config) => Arc::new(engine.open_hf(spec, path, &files)?),
            Some("whisper") => {
                Arc::new(crate::asr::SpeechModel::open(&files, data_bytes, path, engine.device(), spec.name.as_str())?)
            }
            _ if crate::tts::is_voice(&config) => {
                Arc::new(crate::tts::VoiceModel::open(&files, data_bytes, path, spec.name.as_str())?)
            }
            _ => Arc::new(EmbeddingModel::open(path, engine.device(), spec.name.as_str())?),
        }
    } else {
        Arc::new(engine.open(spec, path)?)
    };
    let found = model.info().kind;
    match spec.kind {
        Some(declared) if declared != found => Err(crate::Error::invalid(
            path,
            format!("the spec declares kind {declared}, but the artifact is a {found} model"),
        )),
        _ => Ok(model),
    }
}
