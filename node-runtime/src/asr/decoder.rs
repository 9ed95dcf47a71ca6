//! Whisper's text decoder with a cache of its self-attention's keys and
//! values, so each step runs the new token alone (candle-transformers'
//! decoder caches only the cross-attention and reruns the whole window's
//! tokens every step). The weights are the same tensors candle's model
//! holds.

use candle_core::{D, Module, Tensor};
use candle_nn::{LayerNorm, Linear, VarBuilder};

use crate::Result;

struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    out: Linear,
}

impl Attention {
    fn load(vb: VarBuilder, width: usize) -> candle_core::Result<Self> {
        Ok(Self {
            query: candle_nn::linear(width, width, vb.pp("q_proj"))?,
            key: candle_nn::linear_no_bias(width, width, vb.pp("k_proj"))?,
            value: candle_nn::linear(width, width, vb.pp("v_proj"))?,
            out: candle_nn::linear(width, width, vb.pp("out_proj"))?,
        })
    }
}

struct Block {
    self_attention: Attention,
    self_norm: LayerNorm,
    cross_attention: Attention,
    cross_norm: LayerNorm,
    up: Linear,
    down: Linear,
    mlp_norm: LayerNorm,
}

/// The decoder's weights.
pub struct Decoder {
    tokens: Tensor,
    positions: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    heads: usize,
}

/// What one window's decoding keeps: the cross-attention's keys and values
/// (from the audio) and the self-attention's (from the tokens so far).
pub struct Window {
    cross: Vec<(Tensor, Tensor)>,
    past: Vec<Option<(Tensor, Tensor)>>,
    /// Tokens seen so far.
    len: usize,
}

impl Window {
    /// The same audio with no tokens yet (the audio's keys and values are shared).
    pub fn fresh(&self) -> Self {
        Self { cross: self.cross.clone(), past: vec![None; self.past.len()], len: 0 }
    }
}

impl Decoder {
    /// The decoder under `vb` (`model.decoder` of a Hugging Face Whisper).
    ///
    /// # Errors
    /// When a tensor is missing or misshapen.
    pub fn load(vb: VarBuilder, cfg: &candle_transformers::models::whisper::Config) -> Result<Self> {
        let width = cfg.d_model;
        let norm = |vb: VarBuilder| candle_nn::layer_norm(width, 1e-5, vb);
        let blocks = (0..cfg.decoder_layers)
            .map(|i| {
                let vb = vb.pp(format!("layers.{i}"));
                // Whisper's feed-forward layers are four times its width.
                let ffn = 4 * width;
                Ok(Block {
                    self_attention: Attention::load(vb.pp("self_attn"), width)?,
                    self_norm: norm(vb.pp("self_attn_layer_norm"))?,
                    cross_attention: Attention::load(vb.pp("encoder_attn"), width)?,
                    cross_norm: norm(vb.pp("encoder_attn_layer_norm"))?,
                    up: candle_nn::linear(width, ffn, vb.pp("fc1"))?,
                    down: candle_nn::linear(ffn, width, vb.pp("fc2"))?,
                    mlp_norm: norm(vb.pp("final_layer_norm"))?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            tokens: vb.get((cfg.vocab_size, width), "embed_tokens.weight")?,
            positions: vb.get((cfg.max_target_positions, width), "embed_positions.weight")?,
            blocks,
            norm: norm(vb.pp("layer_norm"))?,
            heads: cfg.decoder_attention_heads,
        })
    }

    /// A window over the encoder's `features` (`[1, frames, width]`).
    ///
    /// # Errors
    /// When a tensor operation fails.
    pub fn window(&self, features: &Tensor) -> Result<Window> {
        let cross = self
            .blocks
            .iter()
            .map(|b| {
                let k = self.split(&b.cross_attention.key.forward(features)?)?;
                let v = self.split(&b.cross_attention.value.forward(features)?)?;
                Ok((k, v))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Window { cross, past: vec![None; self.blocks.len()], len: 0 })
    }

    /// `[1, n, width]` → `[1, heads, n, width / heads]`.
    fn split(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, width) = x.dims3()?;
        Ok(x.reshape((b, n, self.heads, width / self.heads))?.transpose(1, 2)?.contiguous()?)
    }

    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let head_dim = q.dim(D::Minus1)?;
        let mut scores = (q.matmul(&k.t()?)? / (head_dim as f64).sqrt())?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let (b, heads, n, d) = q.dims4()?;
        Ok(weights.matmul(v)?.transpose(1, 2)?.reshape((b, n, heads * d))?)
    }

    /// Runs `tokens` (the next ones of the window) and answers the logits
    /// after the last of them.
    ///
    /// # Errors
    /// When a tensor operation fails or the window is full.
    pub fn step(&self, window: &mut Window, tokens: &[u32]) -> Result<Tensor> {
        let n = tokens.len();
        let device = self.tokens.device();
        let ids = Tensor::new(tokens, device)?;
        let x = self.tokens.embedding(&ids)?.unsqueeze(0)?;
        let mut x = x.broadcast_add(&self.positions.narrow(0, window.len, n)?)?;
        let seen = window.len;
        let total = seen + n;
        // New tokens see every earlier token and the new ones up to themselves.
        let mask = (n > 1)
            .then(|| {
                let values: Vec<f32> = (0..n)
                    .flat_map(|i| (0..total).map(move |j| if j > seen + i { f32::NEG_INFINITY } else { 0.0 }))
                    .collect();
                Tensor::from_vec(values, (n, total), device)
            })
            .transpose()?;
        for (i, block) in self.blocks.iter().enumerate() {
            let h = block.self_norm.forward(&x)?;
            let q = self.split(&block.self_attention.query.forward(&h)?)?;
            let k = self.split(&block.self_attention.key.forward(&h)?)?;
            let v = self.split(&block.self_attention.value.forward(&h)?)?;
            let (k, v) = match window.past[i].take() {
                Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                None => (k, v),
            };
            let attended = self.attend(&q, &k, &v, mask.as_ref())?;
            window.past[i] = Some((k, v));
            x = (x + block.self_attention.out.forward(&attended)?)?;
            let h = block.cross_norm.forward(&x)?;
            let q = self.split(&block.cross_attention.query.forward(&h)?)?;
            let (ck, cv) = &window.cross[i];
            x = (&x + block.cross_attention.out.forward(&self.attend(&q, ck, cv, None)?)?)?;
            let h = block.mlp_norm.forward(&x)?;
            x = (&x + block.down.forward(&block.up.forward(&h)?.gelu_erf()?)?)?;
        }
        window.len = total;
        let last = self.norm.forward(&x.narrow(1, n - 1, 1)?)?;
        Ok(last.squeeze(0)?.matmul(&self.tokens.t()?)?.squeeze(0)?)
    }
}
