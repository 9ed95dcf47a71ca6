//! The decoder architectures the builtin engine runs, and their
//! hyperparameters as read from GGUF metadata.

use super::gguf::Metadata;

/// The architectures named in errors.
pub const SUPPORTED: &str = "llama, qwen2, qwen3, gemma3";

/// Decoder families. They share one transformer implementation; what
/// differs is captured in [`ArchConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Llama,
    Qwen2,
    /// Qwen2 without attention biases, with per-head query and key norms.
    Qwen3,
    Gemma3,
}

impl Architecture {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "llama" => Some(Self::Llama),
            "qwen2" => Some(Self::Qwen2),
            "qwen3" => Some(Self::Qwen3),
            "gemma3" => Some(Self::Gemma3),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Gemma3 => "gemma3",
        }
    }
}

/// How rotary embeddings pair up the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Dimension `i` with `i + d/2` (GPT-NeoX; Qwen2, Gemma).
    Neox,
    /// Dimension `2i` with `2i + 1` (original LLaMA; GGUF llama weights are permuted for it).
    Interleaved,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// GELU, tanh approximation (Gemma).
    GeluTanh,
}

/// Rotary embedding frequencies of one kind of layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeParams {
    pub base: f32,
    /// Linear position scaling: positions are divided by this.
    pub scale: f32,
    /// Llama 3.1's frequency-dependent scaling, on top of `base`.
    pub llama3: Option<Llama3Rope>,
}

/// Llama 3.1's rope scaling: low frequencies slowed by `factor`, high ones
/// kept, a smooth blend between (Hugging Face's `rope_type: llama3`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3Rope {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    /// The context the unscaled model was trained for.
    pub original_context: f32,
}

impl Llama3Rope {
    /// The scaled inverse frequency of one rotary pair.
    pub fn scale(&self, inv_freq: f32) -> f32 {
        let wavelength = 2.0 * std::f32::consts::PI / inv_freq;
        let low_freq_wavelength = self.original_context / self.low_freq_factor;
        let high_freq_wavelength = self.original_context / self.high_freq_factor;
        if wavelength < high_freq_wavelength {
            inv_freq
        } else if wavelength > low_freq_wavelength {
            inv_freq / self.factor
        } else {
            let smooth = (self.original_context / wavelength - self.low_freq_factor)
                / (self.high_freq_factor - self.low_freq_factor);
            (1.0 - smooth) * inv_freq / self.factor + smooth * inv_freq
        }
    }
}

impl RopeParams {
    /// Plain rotary embeddings of `base`.
    pub fn base(base: f32) -> Self {
        Self { base, scale: 1.0, llama3: None }
    }

    /// The inverse frequencies of a head of `head_dim` dimensions.
    pub fn inverse_frequencies(&self, head_dim: usize) -> Vec<f32> {
        (0..head_dim / 2)
            .map(|i| 1.0 / self.base.powf(2.0 * i as f32 / head_dim as f32))
            .map(|f| self.llama3.map_or(f, |l| l.scale(f)))
            .collect()
    }
}

/// Everything that shapes a model's forward pass.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchConfig {
    pub arch: Architecture,
    pub n_layers: usize,
    pub hidden: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_hidden: usize,
    pub rms_eps: f32,
    /// Context length the model was trained for, in tokens.
    pub context_length: usize,
    pub rope_style: RopeStyle,
    /// Rope of global-attention layers.
    pub rope_global: RopeParams,
    /// Rope of sliding-window layers (Gemma 3 uses a lower base there).
    pub rope_local: RopeParams,
    /// Sliding-window size of local layers, in tokens.
    pub sliding_window: Option<usize>,
    /// Every `n`-th layer (1-based) attends globally; the rest use the window.
    pub global_layer_period: Option<usize>,
    /// Embeddings are multiplied by this (Gemma: sqrt(hidden)).
    pub embed_scale: Option<f32>,
    pub activation: Activation,
    /// Query scale before the dot product.
    pub attention_scale: f32,
}

impl ArchConfig {
    /// Bytes one token takes in a KV cache of `element_bytes`-sized values:
    /// keys and values, every layer, every KV head.
    pub fn kv_bytes_per_token(&self, element_bytes: usize) -> u64 {
        (2 * self.n_layers * self.n_kv_heads * self.head_dim * element_bytes) as u64
    }
}

impl ArchConfig {
    /// Reads the hyperparameters of a supported architecture.
    ///
    /// # Errors
    /// A message naming the missing or unsupported setting.
    pub fn from_metadata(md: &Metadata<'_>) -> Result<Self, String> {
        let arch = Architecture::parse(md.architecture())
            .ok_or_else(|| format!("architecture {:?} is not supported (supported: {SUPPORTED})", md.architecture()))?;
        let k = |s: &str| md.arch_key(s);
        let hidden = md.usize(&k("embedding_length"))?;
        let n_heads = md.usize(&k("attention.head_count"))?;
        if n_heads == 0 {
            return Err("attention.head_count is 0".into());
        }
        let n_kv_heads = md.opt_usize(&k("attention.head_count_kv"))?.unwrap_or(n_heads);
        if n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) {
            return Err(format!("{n_heads} attention heads cannot share {n_kv_heads} key/value heads"));
        }
        let head_dim = md.opt_usize(&k("attention.key_length"))?.unwrap_or(hidden / n_heads);
        let value_dim = md.opt_usize(&k("attention.value_length"))?.unwrap_or(head_dim);
        if value_dim != head_dim {
            return Err(format!("key length {head_dim} differs from value length {value_dim}"));
        }
        if let Some(rot) = md.opt_usize(&k("rope.dimension_count"))?
            && rot != head_dim
        {
            return Err(format!("partial rotary embeddings ({rot} of {head_dim} dimensions) are not supported"));
        }
        if !head_dim.is_multiple_of(2) {
            return Err(format!("head dimension {head_dim} is odd"));
        }
        let base = md.opt_f32(&k("rope.freq_base"))?.unwrap_or(10_000.0);
        let scale = match md.opt_str(&k("rope.scaling.type"))? {
            None | Some("none") => 1.0,
            Some("linear") => md.opt_f32(&k("rope.scaling.factor"))?.unwrap_or(1.0),
            Some(other) => return Err(format!("rope scaling {other:?} is not supported")),
        };
        let rope_global = RopeParams { base, scale, llama3: None };
        let is_gemma = arch == Architecture::Gemma3;
        Ok(Self {
            arch,
            n_layers: md.usize(&k("block_count"))?,
            hidden,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_hidden: md.usize(&k("feed_forward_length"))?,
            rms_eps: md.opt_f32(&k("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-6),
            context_length: md.opt_usize(&k("context_length"))?.unwrap_or(4096),
            rope_style: if arch == Architecture::Llama { RopeStyle::Interleaved } else { RopeStyle::Neox },
            rope_global,
            // Gemma 3's local layers use base 10k without scaling (llama.cpp's
            // rope_freq_base_train_swa for this architecture).
            rope_local: if is_gemma { RopeParams::base(10_000.0) } else { rope_global },
            sliding_window: if is_gemma { md.opt_usize(&k("attention.sliding_window"))? } else { None },
            global_layer_period: if is_gemma { Some(6) } else { None },
            embed_scale: if is_gemma { Some((hidden as f32).sqrt()) } else { None },
            activation: if is_gemma { Activation::GeluTanh } else { Activation::Silu },
            attention_scale: 1.0 / (head_dim as f32).sqrt(),
        })
    }

    /// Whether layer `layer` (0-based) uses the sliding window.
    pub fn is_local_layer(&self, layer: usize) -> bool {
        match (self.sliding_window, self.global_layer_period) {
            (Some(_), Some(period)) => !(layer + 1).is_multiple_of(period),
            (Some(_), None) => true,
            _ => false,
        }
    }
}
