//! Paged key/value cache. A sequence's keys and values live in pages of
//! [`PAGE_TOKENS`] positions (every layer's, for those positions) drawn from
//! the model's [`PagePool`]:
//!
//! - a sequence grows by taking another page, never by copying what it holds;
//! - a new sequence that starts with another's head (a shared system prompt,
//!   the earlier turns of a chat) holds that head's full pages too, and copies
//!   only the positions of the last, partly shared one;
//! - a page is written only by its one holder: a shared page that is about to
//!   be written is copied first (the positions before the write), so no
//!   sequence ever sees another's tokens;
//! - a page no sequence holds goes back to the pool and is handed out again
//!   as it is (its old contents are never read: positions past a sequence's
//!   length are overwritten before they count).
//!
//! The pool keeps the pages it was given back, so it holds at most what the
//! sequences held at their peak, which the model's KV footprint (every
//! sequence at its full context) already reserves. It is freed with the model.

use std::sync::{Arc, Mutex, PoisonError};

use candle_core::{DType, Device, Tensor};

/// What the cache holds keys and values as; its size is what the model's
/// footprint counts per cached value.
pub const KV_DTYPE: DType = DType::F32;

/// Positions per page. Attention runs one matrix product per page it reads,
/// so pages are large enough that a chat's context spans a few of them, and
/// small enough that sharing a head copies little.
pub const PAGE_TOKENS: usize = 128;

/// Keys and values of [`PAGE_TOKENS`] positions in every layer,
/// `[kv_heads, PAGE_TOKENS, head_dim]` each.
struct PageData {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
}

/// Hands out pages of one model's shape and takes them back.
pub struct PagePool {
    n_layers: usize,
    kv_heads: usize,
    head_dim: usize,
    device: Device,
    free: Mutex<Vec<PageData>>,
}

impl PagePool {
    pub fn new(n_layers: usize, kv_heads: usize, head_dim: usize, device: &Device) -> Arc<Self> {
        Arc::new(Self { n_layers, kv_heads, head_dim, device: device.clone(), free: Mutex::new(Vec::new()) })
    }

    /// Pages given back and not handed out again.
    pub fn free_pages(&self) -> usize {
        self.free.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    fn take(self: &Arc<Self>) -> candle_core::Result<Page> {
        let reused = self.free.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let data = match reused {
            Some(data) => data,
            None => {
                let fresh = || Tensor::zeros((self.kv_heads, PAGE_TOKENS, self.head_dim), KV_DTYPE, &self.device);
                PageData {
                    k: (0..self.n_layers).map(|_| fresh()).collect::<candle_core::Result<_>>()?,
                    v: (0..self.n_layers).map(|_| fresh()).collect::<candle_core::Result<_>>()?,
                }
            }
        };
        Ok(Page { data: Some(data), pool: self.clone() })
    }
}

/// A page out of its pool; it goes back when its last holder lets go.
struct Page {
    /// Always `Some` until the page is dropped.
    data: Option<PageData>,
    pool: Arc<PagePool>,
}

impl Page {
    fn data(&self) -> &PageData {
        self.data.as_ref().unwrap_or_else(|| unreachable!("a page holds its data until dropped"))
    }

    /// A page of its own holding the first `positions` of this one.
    fn copy_head(&self, positions: usize) -> candle_core::Result<Page> {
        let page = self.pool.take()?;
        if positions > 0 {
            let (to, from) = (page.data(), self.data());
            for (to, from) in to.k.iter().zip(&from.k).chain(to.v.iter().zip(&from.v)) {
                to.slice_set(&from.narrow(1, 0, positions)?.contiguous()?, 1, 0)?;
            }
        }
        Ok(page)
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        if let Some(data) = self.data.take() {
            self.pool.free.lock().unwrap_or_else(PoisonError::into_inner).push(data);
        }
    }
}

/// The cache of one sequence across all layers.
pub struct SeqCache {
    /// Page `i` holds positions `i * PAGE_TOKENS..(i + 1) * PAGE_TOKENS`.
    pages: Vec<Arc<Page>>,
    /// Tokens stored (the same in every layer once a step completes).
    len: usize,
    max_len: usize,
    pool: Arc<PagePool>,
}

impl SeqCache {
    pub fn new(pool: &Arc<PagePool>, max_len: usize) -> Self {
        Self { pages: Vec::new(), len: 0, max_len, pool: pool.clone() }
    }

    /// A new cache holding the first `tokens` positions of `other`, with the
    /// same limit: the full pages of that head are shared, the rest copied.
    pub fn prefix_of(other: &SeqCache, tokens: usize) -> candle_core::Result<Self> {
        if tokens > other.len {
            candle_core::bail!("a cache of {} tokens has no prefix of {tokens}", other.len);
        }
        let full = tokens / PAGE_TOKENS;
        let mut pages = other.pages[..full].to_vec();
        let rest = tokens % PAGE_TOKENS;
        if rest > 0 {
            pages.push(Arc::new(other.pages[full].copy_head(rest)?));
        }
        Ok(Self { pages, len: tokens, max_len: other.max_len, pool: other.pool.clone() })
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

    /// Pages this cache holds, its own and shared.
    pub fn pages(&self) -> usize {
        self.pages.len()
    }

    /// Makes room for `extra` more tokens in every layer: pages past the
    /// stored tokens are let go, a shared page about to be written becomes
    /// this cache's own, and fresh pages cover the rest.
    pub fn reserve(&mut self, extra: usize) -> candle_core::Result<()> {
        let needed = self.len + extra;
        if needed > self.max_len {
            candle_core::bail!("KV cache overflow: {needed} tokens exceed {}", self.max_len);
        }
        self.pages.truncate(self.len.div_ceil(PAGE_TOKENS));
        let written = self.len % PAGE_TOKENS;
        if extra > 0
            && written > 0
            && let Some(last) = self.pages.last_mut()
            && Arc::get_mut(last).is_none()
        {
            *last = Arc::new(last.copy_head(written)?);
        }
        while self.pages.len() * PAGE_TOKENS < needed {
            self.pages.push(Arc::new(self.pool.take()?));
        }
        Ok(())
    }

    /// Writes `k`, `v` (`[tokens, kv_heads, head_dim]`) of `layer` after the
    /// cached tokens and returns views of positions `from..len + tokens`, one
    /// per page, in order, each `[kv_heads, positions, head_dim]`.
    /// Call [`Self::reserve`] first and [`Self::commit`] after the last layer.
    pub fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
        from: usize,
    ) -> candle_core::Result<Vec<(Tensor, Tensor)>> {
        let tokens = k.dim(0)?;
        let end = self.len + tokens;
        if end > self.pages.len() * PAGE_TOKENS || layer >= self.pool.n_layers {
            candle_core::bail!("KV cache layer {layer} has no room reserved for {tokens} tokens");
        }
        let (k, v) = (k.transpose(0, 1)?, v.transpose(0, 1)?);
        let mut position = self.len;
        while position < end {
            let (page, offset) = (position / PAGE_TOKENS, position % PAGE_TOKENS);
            let count = (PAGE_TOKENS - offset).min(end - position);
            let data = self.pages[page].data();
            let source = position - self.len;
            data.k[layer].slice_set(&k.narrow(1, source, count)?.contiguous()?, 1, offset)?;
            data.v[layer].slice_set(&v.narrow(1, source, count)?.contiguous()?, 1, offset)?;
            position += count;
        }
        let mut views = Vec::with_capacity(end.div_ceil(PAGE_TOKENS) - from / PAGE_TOKENS);
        let mut position = from;
        while position < end {
            let (page, offset) = (position / PAGE_TOKENS, position % PAGE_TOKENS);
            let count = (PAGE_TOKENS - offset).min(end - position);
            let data = self.pages[page].data();
            views.push((data.k[layer].narrow(1, offset, count)?, data.v[layer].narrow(1, offset, count)?));
            position += count;
        }
        Ok(views)
    }

    /// Marks `tokens` appended tokens as stored.
    pub fn commit(&mut self, tokens: usize) {
        self.len += tokens;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const LAYERS: usize = 2;
    const KV_HEADS: usize = 2;
    const HEAD_DIM: usize = 4;

    fn pool() -> Arc<PagePool> {
        PagePool::new(LAYERS, KV_HEADS, HEAD_DIM, &Device::Cpu)
    }

    /// Keys and values that name their position and layer, so a read shows
    /// where a value came from: `[tokens, kv_heads, head_dim]`.
    fn token_values(positions: std::ops::Range<usize>, layer: usize, tag: f32) -> Tensor {
        let data: Vec<f32> = positions
            .clone()
            .flat_map(|p| (0..KV_HEADS * HEAD_DIM).map(move |i| tag + (p * 1000 + layer * 100 + i) as f32))
            .collect();
        Tensor::from_vec(data, (positions.len(), KV_HEADS, HEAD_DIM), &Device::Cpu).unwrap()
    }

    /// Appends positions `len..len + tokens` to every layer, tagged `tag`,
    /// and returns the views of layer 0 from position 0.
    fn append(cache: &mut SeqCache, tokens: usize, tag: f32) -> Vec<(Tensor, Tensor)> {
        cache.reserve(tokens).unwrap();
        let start = cache.len();
        let mut first = Vec::new();
        for layer in 0..LAYERS {
            let k = token_values(start..start + tokens, layer, tag);
            let v = token_values(start..start + tokens, layer, tag + 0.5);
            let views = cache.append(layer, &k, &v, 0).unwrap();
            if layer == 0 {
                first = views;
            }
        }
        cache.commit(tokens);
        first
    }

    /// Layer 0's keys across `views`, back in `[tokens, kv_heads, head_dim]`.
    fn keys(views: &[(Tensor, Tensor)]) -> Vec<f32> {
        let parts: Vec<Tensor> = views.iter().map(|(k, _)| k.transpose(0, 1).unwrap()).collect();
        Tensor::cat(&parts, 0).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    }

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn a_sequence_reads_back_every_position_it_wrote_across_pages() {
        let mut cache = SeqCache::new(&pool(), 4 * PAGE_TOKENS);
        append(&mut cache, PAGE_TOKENS - 3, 0.0);
        let views = append(&mut cache, 10, 0.0);
        assert_eq!(cache.pages(), 2);
        assert_eq!(views.len(), 2, "the positions span two pages");
        assert_eq!(keys(&views), flat(&token_values(0..PAGE_TOKENS + 7, 0, 0.0)));
    }

    #[test]
    fn a_shared_head_is_held_not_copied_and_a_write_after_it_leaves_the_donor_alone() {
        let pool = pool();
        let mut donor = SeqCache::new(&pool, 4 * PAGE_TOKENS);
        append(&mut donor, PAGE_TOKENS + 20, 0.0);
        let mut sharer = SeqCache::prefix_of(&donor, PAGE_TOKENS + 10).unwrap();
        assert!(Arc::ptr_eq(&donor.pages[0], &sharer.pages[0]), "the full page is shared");
        assert!(!Arc::ptr_eq(&donor.pages[1], &sharer.pages[1]), "the partial page is copied");
        // The sharer goes elsewhere after its head; the donor still reads its own tokens.
        append(&mut sharer, 30, 7.0);
        let donor_keys = keys(&donor.append(0, &token_values(0..0, 0, 0.0), &token_values(0..0, 0, 0.0), 0).unwrap());
        assert_eq!(donor_keys, flat(&token_values(0..PAGE_TOKENS + 20, 0, 0.0)));
        let sharer_keys = keys(&sharer.append(0, &token_values(0..0, 0, 0.0), &token_values(0..0, 0, 0.0), 0).unwrap());
        let expected = [
            flat(&token_values(0..PAGE_TOKENS + 10, 0, 0.0)),
            flat(&token_values(PAGE_TOKENS + 10..PAGE_TOKENS + 40, 0, 7.0)),
        ];
        assert_eq!(sharer_keys, expected.concat());
    }

    #[test]
    fn a_cache_cut_back_into_a_shared_page_copies_it_before_writing() {
        let pool = pool();
        let mut donor = SeqCache::new(&pool, 4 * PAGE_TOKENS);
        append(&mut donor, PAGE_TOKENS, 0.0);
        let mut sharer = SeqCache::prefix_of(&donor, PAGE_TOKENS).unwrap();
        sharer.truncate(PAGE_TOKENS / 2);
        append(&mut sharer, 4, 3.0);
        assert!(!Arc::ptr_eq(&donor.pages[0], &sharer.pages[0]));
        let donor_keys = keys(&donor.append(0, &token_values(0..0, 0, 0.0), &token_values(0..0, 0, 0.0), 0).unwrap());
        assert_eq!(donor_keys, flat(&token_values(0..PAGE_TOKENS, 0, 0.0)));
    }

    #[test]
    fn pages_go_back_to_the_pool_when_the_last_holder_lets_go_and_are_handed_out_again() {
        let pool = pool();
        let mut donor = SeqCache::new(&pool, 4 * PAGE_TOKENS);
        append(&mut donor, 2 * PAGE_TOKENS + 1, 0.0);
        let sharer = SeqCache::prefix_of(&donor, 2 * PAGE_TOKENS).unwrap();
        drop(donor);
        assert_eq!(pool.free_pages(), 1, "only the donor's own third page is free; the sharer holds two");
        drop(sharer);
        assert_eq!(pool.free_pages(), 3);
        let mut next = SeqCache::new(&pool, 4 * PAGE_TOKENS);
        append(&mut next, PAGE_TOKENS + 1, 0.0);
        assert_eq!(pool.free_pages(), 1, "reused, not allocated");
    }

    #[test]
    fn a_cache_never_grows_past_its_limit() {
        let mut cache = SeqCache::new(&pool(), 10);
        cache.reserve(10).unwrap();
        assert!(cache.reserve(11).is_err());
    }

    proptest! {
        /// Whatever mix of appends, shared heads and cuts, every cache reads
        /// back exactly the tokens it was given, in order.
        #[test]
        fn every_cache_reads_back_what_it_was_given(
            steps in proptest::collection::vec((0usize..3, 1usize..200, 0usize..3), 1..12),
        ) {
            let pool = pool();
            // Each cache beside the values its positions must hold (layer 0's keys).
            let mut caches: Vec<(SeqCache, Vec<f32>)> = vec![(SeqCache::new(&pool, 8 * PAGE_TOKENS), Vec::new())];
            let per_token = KV_HEADS * HEAD_DIM;
            for (tag, (action, amount, which)) in steps.into_iter().enumerate() {
                let which = which % caches.len();
                match action {
                    0 => {
                        let (cache, expected) = &mut caches[which];
                        let tokens = amount.min(8 * PAGE_TOKENS - cache.len());
                        if tokens > 0 {
                            let start = cache.len();
                            append(cache, tokens, tag as f32 * 10_000.0);
                            expected.extend(flat(&token_values(start..start + tokens, 0, tag as f32 * 10_000.0)));
                        }
                    }
                    1 => {
                        let (donor, expected) = &caches[which];
                        let tokens = amount.min(donor.len());
                        let copy = SeqCache::prefix_of(donor, tokens).unwrap();
                        let head = expected[..tokens * per_token].to_vec();
                        caches.push((copy, head));
                    }
                    _ => {
                        let (cache, expected) = &mut caches[which];
                        cache.truncate(amount);
                        expected.truncate(cache.len() * per_token);
                    }
                }
                for (cache, expected) in &mut caches {
                    let empty = token_values(0..0, 0, 0.0);
                    cache.reserve(0).unwrap();
                    let read = if cache.is_empty() { Vec::new() } else { keys(&cache.append(0, &empty, &empty, 0).unwrap()) };
                    prop_assert_eq!(&read, expected);
                }
            }
        }
    }
}
