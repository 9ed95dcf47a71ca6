//! The decoder-only transformer shared by Llama, Qwen2 and Gemma 3, run over
//! a batch that mixes sequences: each contributes a run of new tokens (a
//! prompt chunk or one decoded token) at its own position, and attends only
//! to its own cache.

use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use super::activation;
use super::arch::{ArchConfig, RopeParams, RopeStyle};
use super::kv_cache::{PagePool, SeqCache};
use super::weights::{Kernel, QLinear, Weights};
use crate::Result;
use greenthread_kernels::BlockMatrix;

struct Layer {
    attn_norm: Tensor,
    q: QLinear,
    k: QLinear,
    v: QLinear,
    o: QLinear,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    post_attn_norm: Option<Tensor>,
    ffn_norm: Tensor,
    gate: QLinear,
    up: QLinear,
    down: QLinear,
    post_ffn_norm: Option<Tensor>,
    local: bool,
}

/// One sequence's part of a forward pass.
pub struct BatchItem<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut SeqCache,
    /// Whether to return logits for this item's last token.
    pub want_logits: bool,
}

pub struct Transformer {
    cfg: ArchConfig,
    embeddings: Embeddings,
    layers: Vec<Layer>,
    output_norm: Tensor,
    lm_head: QLinear,
    device: Device,
    /// The pages every sequence's keys and values live in.
    kv_pages: Arc<PagePool>,
    /// Bytes of weights held on the device.
    pub weight_bytes: usize,
}

impl Transformer {
    /// Loads all weights of `cfg`'s architecture.
    ///
    /// # Errors
    /// When a tensor is missing or has the wrong shape.
    pub fn load(cfg: ArchConfig, w: &mut Weights, device: &Device) -> Result<Self> {
        let (h, nh, nkv, d, ff) = (cfg.hidden, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn_hidden);
        let embeddings = if w.is_float("token_embd.weight") {
            Embeddings::Dense(w.dense("token_embd.weight")?)
        } else {
            match w.block_matrix("token_embd.weight")? {
                Some(block) => Embeddings::Block(block),
                None => Embeddings::Candle(w.qtensor("token_embd.weight")?),
            }
        };
        let vocab = embeddings.rows();
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let p = |s: &str| format!("blk.{i}.{s}");
            layers.push(Layer {
                attn_norm: w.vector(&p("attn_norm.weight"), h)?,
                q: w.linear(&p("attn_q"), nh * d, h)?,
                k: w.linear(&p("attn_k"), nkv * d, h)?,
                v: w.linear(&p("attn_v"), nkv * d, h)?,
                o: w.linear(&p("attn_output"), h, nh * d)?,
                q_norm: w.opt_vector(&p("attn_q_norm.weight"), d)?,
                k_norm: w.opt_vector(&p("attn_k_norm.weight"), d)?,
                post_attn_norm: w.opt_vector(&p("post_attention_norm.weight"), h)?,
                ffn_norm: w.vector(&p("ffn_norm.weight"), h)?,
                gate: w.linear(&p("ffn_gate"), ff, h)?,
                up: w.linear(&p("ffn_up"), ff, h)?,
                down: w.linear(&p("ffn_down"), h, ff)?,
                post_ffn_norm: w.opt_vector(&p("post_ffw_norm.weight"), h)?,
                local: cfg.is_local_layer(i),
            });
        }
        let output_norm = w.vector("output_norm.weight", h)?;
        let lm_head = if w.has("output.weight") {
            w.linear("output", vocab, h)?
        } else {
            // Tied embeddings: the output projection shares the embedding table.
            QLinear::new(embeddings.as_kernel()?, None)
        };
        let kv_pages = PagePool::new(cfg.n_layers, cfg.n_kv_heads, cfg.head_dim, device);
        Ok(Self {
            cfg,
            embeddings,
            layers,
            output_norm,
            lm_head,
            device: device.clone(),
            kv_pages,
            weight_bytes: w.loaded_bytes,
        })
    }

    /// Prepares what kernels build lazily — candle repacks K-quant weights
    /// into its tile layout on first use — before the first request rather
    /// than during it, all matrices at once.
    ///
    /// # Errors
    /// On a tensor error.
    pub fn warm_up(&self) -> Result<()> {
        let linears: Vec<&QLinear> = self
            .layers
            .iter()
            .flat_map(|l| [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down])
            .chain(std::iter::once(&self.lm_head))
            .filter(|l| l.is_lazy())
            .collect();
        linears.par_iter().try_for_each(|l| l.prime(&self.device))?;
        Ok(())
    }

    pub fn config(&self) -> &ArchConfig {
        &self.cfg
    }

    pub fn vocab_size(&self) -> usize {
        self.embeddings.rows()
    }

    /// A fresh cache for one sequence of at most `max_len` tokens.
    pub fn new_cache(&self, max_len: usize) -> SeqCache {
        SeqCache::new(&self.kv_pages, max_len)
    }

    /// Runs one step over `batch`, appending every item's tokens to its cache.
    /// Returns `[items wanting logits, vocab]` in batch order, or `None` if none did.
    ///
    /// # Errors
    /// On a tensor error (a bug or an exhausted device) or a cache overflow.
    pub fn forward(&self, batch: &mut [BatchItem<'_>]) -> Result<Option<Tensor>> {
        let cfg = &self.cfg;
        let ids: Vec<u32> = batch.iter().flat_map(|b| b.tokens.iter().copied()).collect();
        let n = ids.len();
        if n == 0 {
            return Ok(None);
        }
        let positions: Vec<usize> =
            batch.iter().flat_map(|b| (b.cache.len()..b.cache.len() + b.tokens.len()).collect::<Vec<_>>()).collect();
        for item in batch.iter_mut() {
            item.cache.reserve(item.tokens.len())?;
        }
        let ids = Tensor::from_vec(ids, n, &self.device)?;
        let mut x = self.embeddings.lookup(&ids)?;
        if let Some(scale) = cfg.embed_scale {
            x = (x * f64::from(scale))?;
        }
        let rope_global = RopeTable::new(cfg, cfg.rope_global, &positions, &self.device)?;
        let rope_local = if cfg.rope_local == cfg.rope_global {
            None
        } else {
            Some(RopeTable::new(cfg, cfg.rope_local, &positions, &self.device)?)
        };
        for (li, layer) in self.layers.iter().enumerate() {
            let rope = if layer.local { rope_local.as_ref().unwrap_or(&rope_global) } else { &rope_global };
            x = self.layer_forward(li, layer, &x, rope, batch)?;
        }
        for item in batch.iter_mut() {
            item.cache.commit(item.tokens.len());
        }
        let mut last_rows = Vec::new();
        let mut offset = 0;
        for item in batch.iter() {
            offset += item.tokens.len();
            if item.want_logits {
                last_rows.push((offset - 1) as u32);
            }
        }
        if last_rows.is_empty() {
            return Ok(None);
        }
        let rows = Tensor::from_vec(last_rows.clone(), last_rows.len(), &self.device)?;
        let last = x.index_select(&rows, 0)?;
        let last = candle_nn::ops::rms_norm(&last, &self.output_norm, cfg.rms_eps)?;
        Ok(Some(self.lm_head.forward(&last)?.to_dtype(DType::F32)?))
    }

    fn layer_forward(
        &self,
        li: usize,
        layer: &Layer,
        x: &Tensor,
        rope: &RopeTable,
        batch: &mut [BatchItem<'_>],
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (nh, nkv, d) = (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim);
        let n = x.dim(0)?;
        let h = candle_nn::ops::rms_norm(x, &layer.attn_norm, cfg.rms_eps)?;
        let mut q = layer.q.forward(&h)?.reshape((n, nh, d))?;
        let mut k = layer.k.forward(&h)?.reshape((n, nkv, d))?;
        let v = layer.v.forward(&h)?.reshape((n, nkv, d))?;
        if let Some(norm) = &layer.q_norm {
            q = candle_nn::ops::rms_norm(&q.contiguous()?, norm, cfg.rms_eps)?;
        }
        if let Some(norm) = &layer.k_norm {
            k = candle_nn::ops::rms_norm(&k.contiguous()?, norm, cfg.rms_eps)?;
        }
        let q = (rope.apply(&q)? * f64::from(cfg.attention_scale))?;
        let k = rope.apply(&k)?;

        let mut outputs = Vec::with_capacity(batch.len());
        let mut offset = 0;
        for item in batch.iter_mut() {
            let t = item.tokens.len();
            let start = item.cache.len();
            let window = if layer.local { cfg.sliding_window } else { None };
            // Oldest position any of this item's queries may see.
            let from = window.map_or(0, |w| (start + 1).saturating_sub(w));
            let pages = item.cache.append(li, &k.narrow(0, offset, t)?, &v.narrow(0, offset, t)?, from)?;
            let q_item = q.narrow(0, offset, t)?;
            outputs.push(attend(&q_item, &pages, start, from, window, nkv, &self.device)?);
            offset += t;
        }
        let attn = Tensor::cat(&outputs, 0)?;
        let mut attn = layer.o.forward(&attn)?;
        if let Some(norm) = &layer.post_attn_norm {
            attn = candle_nn::ops::rms_norm(&attn, norm, cfg.rms_eps)?;
        }
        let x = (x + attn)?;

        let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, cfg.rms_eps)?;
        let gated = activation::gated(&layer.gate.forward(&h)?, &layer.up.forward(&h)?, cfg.activation)?;
        let mut ff = layer.down.forward(&gated)?;
        if let Some(norm) = &layer.post_ffn_norm {
            ff = candle_nn::ops::rms_norm(&ff, norm, cfg.rms_eps)?;
        }
        Ok((x + ff)?)
    }
}

/// The token embedding table, kept once whether or not the output
/// projection is tied to it.
enum Embeddings {
    /// Block formats: rows are decoded on lookup, and the same bytes serve as a tied output matrix.
    Block(Arc<BlockMatrix>),
    Candle(Arc<QTensor>),
    /// Plain floats; the same tensor (shared, not copied) serves as a tied output matrix.
    Dense(Tensor),
}

impl Embeddings {
    fn rows(&self) -> usize {
        match self {
            Self::Block(m) => m.rows(),
            Self::Candle(t) => t.shape().dims().first().copied().unwrap_or(0),
            Self::Dense(t) => t.dims().first().copied().unwrap_or(0),
        }
    }

    fn lookup(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Block(m) => {
                let ids = ids.to_vec1::<u32>()?;
                let mut out = vec![0f32; ids.len() * m.cols()];
                for (row, &id) in out.chunks_exact_mut(m.cols()).zip(&ids) {
                    if id as usize >= m.rows() {
                        candle_core::bail!("token id {id} is outside the embedding table");
                    }
                    m.dequantize_row(id as usize, row);
                }
                Tensor::from_vec(out, (ids.len(), m.cols()), &Device::Cpu)
            }
            Self::Candle(t) => t.embedding(ids),
            Self::Dense(t) => t.index_select(ids, 0)?.to_dtype(DType::F32),
        }
    }

    fn as_kernel(&self) -> candle_core::Result<Kernel> {
        match self {
            Self::Block(m) => Ok(Kernel::Block(m.clone())),
            Self::Candle(t) => Kernel::from_qtensor(t.clone()),
            Self::Dense(t) => Ok(Kernel::Dense(t.clone())),
        }
    }
}

/// Causal attention of one sequence's `t` new queries over its cached keys.
///
/// `q`: `[t, heads, d]` (already scaled); `pages`: keys and values, each
/// `[kv_heads, positions, d]`, that together cover absolute positions
/// `from..start + t` in order. Scores are computed page by page and joined
/// (they are `d` times smaller than the keys for one new token), and the
/// output sums each page's share, so no page is copied to make one matrix.
fn attend(
    q: &Tensor,
    pages: &[(Tensor, Tensor)],
    start: usize,
    from: usize,
    window: Option<usize>,
    nkv: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let (t, nh, d) = q.dims3()?;
    let group = nh / nkv;
    let len: usize = pages.iter().map(|(k, _)| k.dim(1)).sum::<candle_core::Result<_>>()?;
    // [t, nkv, group, d] → [nkv, t * group, d]: query heads that share a
    // key/value head become rows of one matrix product.
    let q = q.reshape((t, nkv, group, d))?.transpose(0, 1)?.contiguous()?.reshape((nkv, t * group, d))?;
    let scores: Vec<Tensor> =
        pages.iter().map(|(keys, _)| q.matmul(&keys.transpose(1, 2)?)).collect::<candle_core::Result<_>>()?;
    let scores = if scores.len() == 1 { scores[0].clone() } else { Tensor::cat(&scores, 2)? };
    // A single new token sees its whole (windowed) cache: no mask needed.
    let scores = if t > 1 {
        let mut mask = vec![0f32; t * group * len];
        for ti in 0..t {
            let pos = start + ti;
            for g in 0..group {
                let row = &mut mask[(ti * group + g) * len..(ti * group + g + 1) * len];
                for (j, m) in row.iter_mut().enumerate() {
                    let key_pos = from + j;
                    let visible = key_pos <= pos && window.is_none_or(|w| key_pos + w > pos);
                    if !visible {
                        *m = f32::NEG_INFINITY;
                    }
                }
            }
        }
        let mask = Tensor::from_vec(mask, (t * group, len), device)?;
        scores.broadcast_add(&mask)?
    } else {
        scores
    };
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    let mut out: Option<Tensor> = None;
    let mut offset = 0;
    for (_, values) in pages {
        let positions = values.dim(1)?;
        let share = if pages.len() == 1 { probs.clone() } else { probs.narrow(2, offset, positions)?.contiguous()? };
        let part = share.matmul(&values.contiguous()?)?;
        out = Some(match out {
            Some(sum) => (sum + part)?,
            None => part,
        });
        offset += positions;
    }
    let Some(out) = out else { candle_core::bail!("attention over an empty cache") };
    out.reshape((nkv, t, group, d))?.transpose(0, 1)?.contiguous()?.reshape((t, nh * d))
}

/// cos/sin of every token's position for one set of rope parameters.
struct RopeTable {
    cos: Tensor,
    sin: Tensor,
    style: RopeStyle,
}

impl RopeTable {
    fn new(cfg: &ArchConfig, params: RopeParams, positions: &[usize], device: &Device) -> candle_core::Result<Self> {
        let half = cfg.head_dim / 2;
        let inv_freq = params.inverse_frequencies(cfg.head_dim);
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            let p = p as f32 / params.scale;
            for f in &inv_freq {
                let (s, c) = (p * f).sin_cos();
                cos.push(c);
                sin.push(s);
            }
        }
        let n = positions.len();
        Ok(Self {
            cos: Tensor::from_vec(cos, (n, 1, half), device)?,
            sin: Tensor::from_vec(sin, (n, 1, half), device)?,
            style: cfg.rope_style,
        })
    }

    /// Rotates `x`: `[tokens, heads, d]`, each token by its own position.
    fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (n, heads, d) = x.dims3()?;
        // Tokens as the batch dimension and a time axis of one: every token
        // gets the cos/sin row of its own position.
        let x4 = x.contiguous()?.reshape((n, heads, 1, d))?;
        let y = match self.style {
            RopeStyle::Neox => candle_nn::rotary_emb::rope(&x4, &self.cos, &self.sin)?,
            RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(&x4, &self.cos, &self.sin)?,
        };
        y.reshape((n, heads, d))
    }
}
