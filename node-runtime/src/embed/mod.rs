//! BERT models from a Hugging Face directory (`config.json`,
//! `model.safetensors`, `tokenizer.json`): an embedding model
//! (sentence-transformers pooling) served as sentence vectors, or a
//! cross-encoder (`BertForSequenceClassification`) served as rerank scores.
//! Asleep each keeps only its tokenizer in memory, awake its weights, like
//! the chat models.

pub mod bert;
pub mod pack;
pub mod wordpiece;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::Device;
use greenthread_core::{ChatMessage, ModelKind, Task};
use serde_json::Value;

use self::bert::{Bert, BertConfig, BertHead, Pooling};
use self::wordpiece::WordPiece;
use crate::engine::WeightSource;
use crate::engine::{EmbeddingInput, GenerateRequest, GenerationStream, ModelInfo, ModelInstance, Scored, ServedModel};
use crate::{Error, Result};

/// What an embedding model keeps while asleep: a megabyte or so.
struct Host {
    path: PathBuf,
    cfg: BertConfig,
    tokenizer: WordPiece,
    head: BertHead,
    info: ModelInfo,
}

/// An embedding model or a cross-encoder.
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
        let cross_encoder = config["architectures"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x.as_str().is_some_and(|x| x.ends_with("ForSequenceClassification"))));
        let labels = config["id2label"].as_object().map_or(1, serde_json::Map::len);
        if cross_encoder && labels != 1 {
            return Err(unservable(
                path,
                format!("a cross-encoder with {labels} labels; one relevance logit is supported"),
            ));
        }
        let head = if cross_encoder {
            BertHead::Classifier
        } else {
            let (pooling, normalize) = sentence_head(&files).map_err(|e| unservable(path, e))?;
            BertHead::Sentence { pooling, normalize }
        };
        let max_tokens = files
            .get("sentence_bert_config.json")
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
            .and_then(|v| v["max_seq_length"].as_u64())
            .map_or(cfg.max_position_embeddings, |m| (m as usize).min(cfg.max_position_embeddings));
        let info = ModelInfo {
            kind: if cross_encoder { ModelKind::Reranker } else { ModelKind::Embedding },
            architecture: "bert".into(),
            description: config["_name_or_path"].as_str().map(str::to_owned),
            context_length: max_tokens,
            vocab_size: tokenizer.vocab_size(),
            weight_bytes: data_bytes as usize,
            has_chat_template: false,
            tool_calls: false,
            embedding_dimensions: (!cross_encoder).then_some(cfg.hidden_size),
        };
        let host = Host { path: path.to_path_buf(), cfg, tokenizer, head, info };
        Ok(Self { host, device: device.clone(), name: name.to_owned(), awake: Mutex::new(None) })
    }

    fn awake(&self) -> Option<Arc<Bert>> {
        self.awake.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn wrong_kind(&self, task: Task) -> Error {
        Error::WrongKind(greenthread_core::model_kind::wrong_kind(&self.name, self.host.info.kind, task))
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
        let tensors = source.safetensors(&self.device)?;
        let bert = Bert::load(&self.host.cfg, tensors, self.host.head, &self.device)
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
        Err(self.wrong_kind(Task::Generate))
    }

    fn text_prompt(&self, text: &str) -> Vec<u32> {
        self.host.tokenizer.encode(text, self.host.info.context_length)
    }

    fn generate(&self, _: GenerateRequest) -> Result<GenerationStream> {
        Err(self.wrong_kind(Task::Generate))
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

    fn rerank(&self, query: &str, documents: &[String]) -> Result<Scored> {
        let bert = self.awake().ok_or(Error::Asleep)?;
        let max = self.host.info.context_length;
        let tokenizer = &self.host.tokenizer;
        match self.host.head {
            BertHead::Classifier => {
                let pairs: Vec<_> = documents.iter().map(|d| tokenizer.encode_pair(query, d, max)).collect();
                let tokens = pairs.iter().map(|(ids, _)| ids.len()).sum();
                let mut scores = Vec::with_capacity(pairs.len());
                for batch in pairs.chunks(BATCH) {
                    // sentence-transformers' CrossEncoder: a sigmoid over a single logit.
                    scores.extend(bert.classify(batch)?.into_iter().map(|logit| 1.0 / (1.0 + (-logit).exp())));
                }
                Ok(Scored { scores, tokens })
            }
            BertHead::Sentence { .. } => {
                // The cosine similarity of the query's vector and each document's.
                let texts: Vec<Vec<u32>> = std::iter::once(query)
                    .chain(documents.iter().map(String::as_str))
                    .map(|t| tokenizer.encode(t, max))
                    .collect();
                let tokens = texts.iter().map(Vec::len).sum();
                let mut vectors = Vec::with_capacity(texts.len());
                for batch in texts.chunks(BATCH) {
                    vectors.extend(bert.embed(batch)?);
                }
                let (query, documents) = vectors.split_first().ok_or(Error::Asleep)?;
                let scores = documents.iter().map(|d| cosine(query, d)).collect();
                Ok(Scored { scores, tokens })
            }
        }
    }
}

/// Texts run through the model at once: bounds the padded batch's memory.
const BATCH: usize = 32;

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    dot / (norm(a) * norm(b))
}
