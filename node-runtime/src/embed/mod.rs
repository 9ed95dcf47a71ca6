//! Embedding models: a Hugging Face directory (BERT `config.json`,
//! `model.safetensors`, `tokenizer.json`, sentence-transformers pooling)
//! served as sentence vectors, asleep with only its tokenizer in memory and
//! awake with its weights, like the chat models.

pub mod bert;
pub mod pack;
pub mod wordpiece;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::Device;
use greenthread_core::ChatMessage;
use serde_json::Value;

use self::bert::{Bert, BertConfig, Pooling};
use self::wordpiece::WordPiece;
use crate::engine::WeightSource;
use crate::engine::{EmbeddingInput, GenerateRequest, GenerationStream, ModelInfo, ModelInstance, ServedModel};
use crate::{Error, Result};

/// What an embedding model keeps while asleep: a megabyte or so.
struct Host {
    path: PathBuf,
    cfg: BertConfig,
    tokenizer: WordPiece,
    pooling: Pooling,
    normalize: bool,
    info: ModelInfo,
}

/// An embedding model.
pub struct EmbeddingModel {
    host: Host,
    device: Device,
    name: String,
    awake: Mutex<Option<Arc<Bert>>>,
}

fn unservable(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::invalid(path, what)
}

impl EmbeddingModel {
    /// Opens a packed model directory (see [`pack`]), asleep.
    ///
    /// # Errors
    /// [`Error::InvalidModel`] when a file is missing or describes something
    /// this engine does not run.
    pub fn open(path: &Path, device: &Device, name: &str) -> Result<Self> {
        let (files, data_bytes) = pack::unpack_files(path).map_err(|e| unservable(path, e))?;
        let file = |name: &str| files.get(name).ok_or_else(|| unservable(path, format!("the model has no {name}")));
        let cfg: BertConfig =
            serde_json::from_str(file("config.json")?).map_err(|e| unservable(path, format!("config.json: {e}")))?;
        let config: Value = serde_json::from_str(file("config.json")?).unwrap_or_default();
        let model_type = config["model_type"].as_str().unwrap_or_default();
        if !matches!(model_type, "bert" | "") {
            return Err(unservable(
                path,
                format!("model_type {model_type:?} is not an embedding model GreenThread runs (bert is)"),
            ));
        }
        cfg.check().map_err(|e| unservable(path, e))?;
        let tokenizer = WordPiece::from_json(file("tokenizer.json")?).map_err(|e| unservable(path, e))?;
        let (pooling, normalize) = sentence_head(&files).map_err(|e| unservable(path, e))?;
        let max_tokens = files
            .get("sentence_bert_config.json")
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
            .and_then(|v| v["max_seq_length"].as_u64())
            .map_or(cfg.max_position_embeddings, |m| (m as usize).min(cfg.max_position_embeddings));
        let info = ModelInfo {
            architecture: "bert".into(),
            description: config["_name_or_path"].as_str().map(str::to_owned),
            context_length: max_tokens,
            vocab_size: tokenizer.vocab_size(),
            weight_bytes: data_bytes as usize,
            has_chat_template: false,
            tool_calls: false,
            embedding_dimensions: Some(cfg.hidden_size),
        };
        let host = Host { path: path.to_path_buf(), cfg, tokenizer, pooling, normalize, info };
        Ok(Self { host, device: device.clone(), name: name.to_owned(), awake: Mutex::new(None) })
    }

    fn awake(&self) -> Option<Arc<Bert>> {
        self.awake.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn wrong_kind(&self) -> Error {
        Error::WrongKind(format!("model {} is an embedding model; use /v1/embeddings", self.name))
    }
}

/// Pooling and normalisation from the sentence-transformers files; mean
/// pooling and unit vectors where a directory has none.
fn sentence_head(files: &BTreeMap<String, String>) -> std::result::Result<(Pooling, bool), String> {
    let pooling = match files.get("1_Pooling/config.json") {
        None => Pooling::Mean,
        Some(text) => {
            let cfg: Value = serde_json::from_str(text).map_err(|e| format!("1_Pooling/config.json: {e}"))?;
            let on = |key: &str| cfg[key].as_bool() == Some(true);
            match (on("pooling_mode_mean_tokens"), on("pooling_mode_cls_token")) {
                (true, false) => Pooling::Mean,
                (false, true) => Pooling::Cls,
                _ => return Err("1_Pooling/config.json: only mean or CLS pooling is supported".into()),
            }
        }
    };
    let normalize = match files.get("modules.json") {
        None => true,
        Some(text) => text.contains("sentence_transformers.models.Normalize"),
    };
    Ok((pooling, normalize))
}

impl ServedModel for EmbeddingModel {
    fn wake(&self, source: WeightSource<'_>) -> Result<()> {
        if self.is_awake() {
            return Ok(());
        }
        let tensors = match source {
            WeightSource::Memory(bytes) => candle_core::safetensors::load_buffer(bytes, &self.device)?,
            WeightSource::File(path) => candle_core::safetensors::load(path, &self.device)?,
        };
        let bert = Bert::load(&self.host.cfg, tensors, self.host.pooling, self.host.normalize, &self.device)
            .map_err(|e| unservable(&self.host.path, e))?;
        *self.awake.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(bert));
        Ok(())
    }

    fn sleep(&self) -> Result<()> {
        // Requests still running keep their handle until they finish.
        self.awake.lock().unwrap_or_else(PoisonError::into_inner).take();
        crate::builtin::release_freed_memory();
        Ok(())
    }

    fn is_awake(&self) -> bool {
        self.awake().is_some()
    }

    fn device_bytes(&self) -> usize {
        self.awake().map_or(0, |b| b.weight_bytes)
    }
}

impl ModelInstance for EmbeddingModel {
    fn info(&self) -> &ModelInfo {
        &self.host.info
    }

    fn chat_prompt(&self, _: &[ChatMessage], _: Option<&Value>) -> Result<Vec<u32>> {
        Err(self.wrong_kind())
    }

    fn text_prompt(&self, text: &str) -> Vec<u32> {
        self.host.tokenizer.encode(text, self.host.info.context_length)
    }

    fn generate(&self, _: GenerateRequest) -> Result<GenerationStream> {
        Err(self.wrong_kind())
    }

    fn embedding_tokens(&self, input: EmbeddingInput) -> Result<Vec<u32>> {
        let max = self.host.info.context_length;
        match input {
            EmbeddingInput::Text(text) => Ok(self.host.tokenizer.encode(&text, max)),
            EmbeddingInput::Tokens(ids) => {
                if let Some(&bad) = ids.iter().find(|&&t| t as usize >= self.host.info.vocab_size) {
                    return Err(Error::TokenOutOfRange(bad));
                }
                Ok(self.host.tokenizer.frame(ids, max))
            }
        }
    }

    fn embed(&self, inputs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let bert = self.awake().ok_or(Error::Asleep)?;
        bert.embed(inputs)
    }
}
