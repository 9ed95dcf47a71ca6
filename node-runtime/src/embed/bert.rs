//! A BERT encoder (the architecture of sentence-transformers models such as
//! all-MiniLM-L6-v2): absolute position embeddings, post-norm layers with
//! exact-erf GELU, then mean or CLS pooling and optional L2 normalisation —
//! or, for a cross-encoder (`BertForSequenceClassification`), the pooler
//! and classifier that score a pair.

use std::collections::HashMap;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{LayerNorm, Linear};
use serde::Deserialize;

use crate::{Error, Result};

/// The fields of `config.json` a BERT encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub hidden_act: Option<String>,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_eps() -> f64 {
    1e-12
}

impl BertConfig {
    /// Checks what this implementation supports.
    ///
    /// # Errors
    /// [`Error::InvalidModel`] naming the unsupported setting.
    pub fn check(&self) -> Result<()> {
        if self.hidden_size == 0
            || self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(Error::Unservable("config.json: hidden_size must be a multiple of num_attention_heads".into()));
        }
        if let Some(act) = self.hidden_act.as_deref().filter(|a| *a != "gelu") {
            return Err(Error::Unservable(format!("config.json: hidden_act {act:?} is not supported (gelu is)")));
        }
        if let Some(kind) = self.position_embedding_type.as_deref().filter(|k| *k != "absolute") {
            return Err(Error::Unservable(format!("config.json: position_embedding_type {kind:?} is not supported")));
        }
        Ok(())
    }
}

/// How token vectors become one sentence vector (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    Mean,
    Cls,
}

/// What the encoder's output becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BertHead {
    /// A sentence vector (an embedding model).
    Sentence { pooling: Pooling, normalize: bool },
    /// The logits of a pair (a cross-encoder).
    Classifier,
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// The head of a cross-encoder: `tanh(pooler(h[CLS]))`, then one logit per label.
struct Classifier {
    pooler: Linear,
    classifier: Linear,
}

/// A BERT encoder with its weights on a device.
pub struct Bert {
    words: Tensor,
    positions: Tensor,
    /// One row per token type (segment): 0 for a text or a pair's first
    /// part, 1 for a pair's second.
    token_types: Tensor,
    classifier: Option<Classifier>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head: BertHead,
    device: Device,
    pub weight_bytes: usize,
}

/// Takes tensors out of a safetensors map, with or without a `bert.` prefix.
struct Tensors(HashMap<String, Tensor>);

impl Tensors {
    fn take(&mut self, name: &str) -> Result<Tensor> {
        self.0
            .remove(name)
            .or_else(|| self.0.remove(&format!("bert.{name}")))
            .ok_or_else(|| Error::Unservable(format!("model.safetensors has no tensor {name}")))?
            .to_dtype(DType::F32)
            .map_err(Error::from)
    }

    fn linear(&mut self, name: &str) -> Result<Linear> {
        Ok(Linear::new(self.take(&format!("{name}.weight"))?, Some(self.take(&format!("{name}.bias"))?)))
    }

    fn norm(&mut self, name: &str, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm::new(self.take(&format!("{name}.weight"))?, self.take(&format!("{name}.bias"))?, eps))
    }
}

impl Bert {
    /// Builds the encoder from the tensors of `model.safetensors`.
    ///
    /// # Errors
    /// [`Error::InvalidModel`] when a tensor is missing or misshapen.
    pub fn load(cfg: &BertConfig, tensors: HashMap<String, Tensor>, head: BertHead, device: &Device) -> Result<Self> {
        let weight_bytes = tensors.values().map(|t| t.elem_count() * t.dtype().size_in_bytes()).sum();
        let mut t = Tensors(tensors);
        let eps = cfg.layer_norm_eps;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let p = format!("encoder.layer.{i}");
                Ok(Layer {
                    query: t.linear(&format!("{p}.attention.self.query"))?,
                    key: t.linear(&format!("{p}.attention.self.key"))?,
                    value: t.linear(&format!("{p}.attention.self.value"))?,
                    attention_out: t.linear(&format!("{p}.attention.output.dense"))?,
                    attention_norm: t.norm(&format!("{p}.attention.output.LayerNorm"), eps)?,
                    intermediate: t.linear(&format!("{p}.intermediate.dense"))?,
                    output: t.linear(&format!("{p}.output.dense"))?,
                    output_norm: t.norm(&format!("{p}.output.LayerNorm"), eps)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let classifier = match head {
            BertHead::Classifier => {
                Some(Classifier { pooler: t.linear("pooler.dense")?, classifier: t.linear("classifier")? })
            }
            BertHead::Sentence { .. } => None,
        };
        Ok(Self {
            words: t.take("embeddings.word_embeddings.weight")?,
            positions: t.take("embeddings.position_embeddings.weight")?,
            token_types: t.take("embeddings.token_type_embeddings.weight")?,
            classifier,
            embedding_norm: t.norm("embeddings.LayerNorm", eps)?,
            layers,
            heads: cfg.num_attention_heads,
            head,
            device: device.clone(),
            weight_bytes,
        })
    }

    /// The last hidden states of a padded batch, and its mask (1 for a
    /// token, 0 for padding). `second_from[b]`: where input `b`'s second
    /// segment starts (its length for a single text).
    fn encode(&self, inputs: &[Vec<u32>], second_from: &[usize]) -> Result<(Tensor, Tensor)> {
        let batch = inputs.len();
        let len = inputs.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = vec![0u32; batch * len];
        let mut types = vec![0u32; batch * len];
        let mut mask = vec![0f32; batch * len];
        for (b, input) in inputs.iter().enumerate() {
            ids[b * len..b * len + input.len()].copy_from_slice(input);
            types[b * len + second_from[b].min(input.len())..b * len + input.len()].fill(1);
            mask[b * len..b * len + input.len()].fill(1.0);
        }
        let ids = Tensor::from_vec(ids, (batch, len), &self.device)?;
        let types = Tensor::from_vec(types, (batch, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (batch, len), &self.device)?;
        let positions = self.positions.narrow(0, 0, len)?;
        let x = self.words.embedding(&ids.flatten_all()?)?.reshape((batch, len, ()))?;
        let segments = self.token_types.embedding(&types.flatten_all()?)?.reshape((batch, len, ()))?;
        let x = (x.broadcast_add(&positions)? + segments)?;
        let mut x = self.embedding_norm.forward(&x)?;
        // 0 where a key is a real token, a large negative number where it is padding.
        let key_bias = ((mask.clone() - 1.0)? * 1e9)?.reshape((batch, 1, 1, len))?;
        for layer in &self.layers {
            x = self.layer(layer, &x, &key_bias)?;
        }
        Ok((x, mask))
    }

    /// One vector per input (each `[CLS] … [SEP]` token ids), computed in one
    /// padded batch with the padding masked out of attention and pooling.
    ///
    /// # Errors
    /// When an id is outside the vocabulary or a tensor operation fails.
    pub fn embed(&self, inputs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let BertHead::Sentence { pooling, normalize } = self.head else {
            return Err(Error::Unservable("a cross-encoder makes no sentence vectors".into()));
        };
        if inputs.is_empty() || inputs.iter().all(Vec::is_empty) {
            return Ok(vec![Vec::new(); inputs.len()]);
        }
        let whole: Vec<usize> = inputs.iter().map(Vec::len).collect();
        let (x, mask) = self.encode(inputs, &whole)?;
        let pooled = match pooling {
            Pooling::Cls => x.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let m = mask.unsqueeze(2)?;
                x.broadcast_mul(&m)?.sum(1)?.broadcast_div(&m.sum(1)?)?
            }
        };
        let pooled = if normalize {
            let norm = pooled.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            pooled.broadcast_div(&norm)?
        } else {
            pooled
        };
        Ok(pooled.to_vec2::<f32>()?)
    }

    /// The first logit of each pair (`[CLS] a [SEP] b [SEP]` ids, and where
    /// `b` starts), computed in one padded batch.
    ///
    /// # Errors
    /// When this is not a cross-encoder, an id is outside the vocabulary or
    /// a tensor operation fails.
    pub fn classify(&self, pairs: &[(Vec<u32>, usize)]) -> Result<Vec<f32>> {
        let Some(head) = &self.classifier else {
            return Err(Error::Unservable("an embedding model has no classifier".into()));
        };
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, second_from): (Vec<Vec<u32>>, Vec<usize>) = pairs.iter().cloned().unzip();
        let (x, _) = self.encode(&ids, &second_from)?;
        let cls = x.narrow(1, 0, 1)?.squeeze(1)?;
        let pooled = head.pooler.forward(&cls)?.tanh()?;
        let logits = head.classifier.forward(&pooled)?;
        Ok(logits.narrow(1, 0, 1)?.squeeze(1)?.to_vec1::<f32>()?)
    }

    fn layer(&self, layer: &Layer, x: &Tensor, key_bias: &Tensor) -> Result<Tensor> {
        let (batch, len, hidden) = x.dims3()?;
        let head_dim = hidden / self.heads;
        let split = |t: Tensor| -> Result<Tensor> {
            Ok(t.reshape((batch, len, self.heads, head_dim))?.transpose(1, 2)?.contiguous()?)
        };
        let q = split(layer.query.forward(x)?)?;
        let k = split(layer.key.forward(x)?)?;
        let v = split(layer.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (head_dim as f64).sqrt())?.broadcast_add(key_bias)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = weights.matmul(&v)?.transpose(1, 2)?.reshape((batch, len, hidden))?;
        let x = layer.attention_norm.forward(&(layer.attention_out.forward(&context)? + x)?)?;
        let inner = layer.intermediate.forward(&x)?.gelu_erf()?;
        Ok(layer.output_norm.forward(&(layer.output.forward(&inner)? + &x)?)?)
    }
}
