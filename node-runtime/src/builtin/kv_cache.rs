//! Per-sequence key/value cache: one growable buffer per layer, so each
//! sequence in a batch attends only to its own past.

use candle_core::{DType, Device, Tensor};

/// What the cache holds keys and values as; its size is what the model's
/// footprint counts per cached value.
pub const KV_DTYPE: DType = DType::F32;

/// Cache growth step, in tokens. Growing in steps keeps copies rare without
/// reserving the whole context window for a short chat.
const GROWTH_STEP: usize = 256;

/// Keys and values of one layer, `[kv_heads, capacity, head_dim]` each.
struct LayerCache {
    k: Tensor,
    v: Tensor,
}

/// The cache of one sequence across all layers.
pub struct SeqCache {
    layers: Vec<Option<LayerCache>>,
    /// Tokens stored (the same in every layer once a step completes).
    len: usize,
    capacity: usize,
    max_len: usize,
    kv_heads: usize,
    head_dim: usize,
    device: Device,
}

impl SeqCache {
    pub fn new(n_layers: usize, kv_heads: usize, head_dim: usize, max_len: usize, device: &Device) -> Self {
        Self {
            layers: (0..n_layers).map(|_| None).collect(),
            len: 0,
            capacity: 0,
            max_len,
            kv_heads,
            head_dim,
            device: device.clone(),
        }
    }

    /// A new cache holding the first `tokens` positions of `other`, with
    /// the same limit: the keys and values of a shared prompt head, copied.
    pub fn prefix_of(other: &SeqCache, tokens: usize) -> candle_core::Result<Self> {
        if tokens > other.len {
            candle_core::bail!("a cache of {} tokens has no prefix of {tokens}", other.len);
        }
        let mut cache = Self::new(other.layers.len(), other.kv_heads, other.head_dim, other.max_len, &other.device);
        cache.reserve(tokens)?;
        for (to, from) in cache.layers.iter().zip(&other.layers) {
            if let (Some(to), Some(from)) = (to, from) {
                to.k.slice_set(&from.k.narrow(1, 0, tokens)?.contiguous()?, 1, 0)?;
                to.v.slice_set(&from.v.narrow(1, 0, tokens)?.contiguous()?, 1, 0)?;
            }
        }
        cache.len = tokens;
        Ok(cache)
    }

    /// Forgets every position from `tokens` on; later appends overwrite them.
    pub fn truncate(&mut self, tokens: usize) {
        self.len = self.len.min(tokens);
    }

    /// Tokens already in the cache.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes room for `extra` more tokens in every layer.
    pub fn reserve(&mut self, extra: usize) -> candle_core::Result<()> {
        let needed = self.len + extra;
        if needed > self.max_len {
            candle_core::bail!("KV cache overflow: {needed} tokens exceed {}", self.max_len);
        }
        if needed <= self.capacity {
            return Ok(());
        }
        let new_capacity =
            needed.div_ceil(GROWTH_STEP).saturating_mul(GROWTH_STEP).max(self.capacity * 2).min(self.max_len);
        for layer in self.layers.iter_mut() {
            let fresh = |old: Option<&Tensor>| -> candle_core::Result<Tensor> {
                let t = Tensor::zeros((self.kv_heads, new_capacity, self.head_dim), KV_DTYPE, &self.device)?;
                if let Some(old) = old
                    && self.len > 0
                {
                    t.slice_set(&old.narrow(1, 0, self.len)?.contiguous()?, 1, 0)?;
                }
                Ok(t)
            };
            let k = fresh(layer.as_ref().map(|l| &l.k))?;
            let v = fresh(layer.as_ref().map(|l| &l.v))?;
            *layer = Some(LayerCache { k, v });
        }
        self.capacity = new_capacity;
        Ok(())
    }

    /// Writes `k`, `v` (`[tokens, kv_heads, head_dim]`) of `layer` after the
    /// cached tokens and returns views of positions `from..len + tokens`.
    /// Call [`Self::reserve`] first and [`Self::commit`] after the last layer.
    pub fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
        from: usize,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let tokens = k.dim(0)?;
        let Some(Some(cache)) = self.layers.get(layer) else {
            candle_core::bail!("KV cache layer {layer} was not reserved");
        };
        cache.k.slice_set(&k.transpose(0, 1)?.contiguous()?, 1, self.len)?;
        cache.v.slice_set(&v.transpose(0, 1)?.contiguous()?, 1, self.len)?;
        let end = self.len + tokens;
        Ok((cache.k.narrow(1, from, end - from)?, cache.v.narrow(1, from, end - from)?))
    }

    /// Marks `tokens` appended tokens as stored.
    pub fn commit(&mut self, tokens: usize) {
        self.len += tokens;
    }
}
