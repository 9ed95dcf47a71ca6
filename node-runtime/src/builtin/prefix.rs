//! Prefix caching: a sequence that ends leaves its KV cache in one of the
//! worker's free places, so a new prompt that starts with the same tokens (a
//! shared system prompt, the earlier turns of a chat) reuses their keys and
//! values instead of computing them again. A new prompt may also share the
//! head of a sequence still running.
//!
//! Retained caches live only in places no sequence uses: the worker's KV
//! memory stays bounded by its sequence limit, and the oldest retained cache
//! makes way first. A new sequence takes a retained cache over (no copy);
//! the head of a running sequence is shared page by page (only its last,
//! partly shared page is copied: see `kv_cache`).

use std::collections::VecDeque;

use super::kv_cache::SeqCache;

/// Shared heads shorter than this are computed, not copied: below it the
/// match is mostly a chat template's opening, and copying saves next to nothing.
pub const MIN_SHARED_TOKENS: usize = 16;

/// The ended sequences' caches, oldest first.
#[derive(Default)]
pub struct Retained {
    entries: VecDeque<(Vec<u32>, SeqCache)>,
}

impl Retained {
    /// Keeps the cache of `tokens` (those it holds, in order). A retained
    /// cache whose tokens start this one's is dropped: this one covers it.
    pub fn keep(&mut self, tokens: Vec<u32>, cache: SeqCache) {
        if tokens.len() < MIN_SHARED_TOKENS {
            return;
        }
        self.entries.retain(|(held, _)| !tokens.starts_with(held));
        self.entries.push_back((tokens, cache));
    }

    /// Drops the oldest caches until at most `count` are left.
    pub fn shrink_to(&mut self, count: usize) {
        while self.entries.len() > count {
            self.entries.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The tokens each retained cache holds, oldest first.
    pub fn tokens(&self) -> impl Iterator<Item = &[u32]> {
        self.entries.iter().map(|(tokens, _)| tokens.as_slice())
    }

    /// Takes the `index`th retained cache (in [`Self::tokens`] order) out.
    pub fn take(&mut self, index: usize) -> Option<SeqCache> {
        self.entries.remove(index).map(|(_, cache)| cache)
    }
}

/// Of `candidates` (tokens a cache holds, in order), the one sharing the
/// longest head with `prompt`, and how many tokens of it to reuse: at least
/// [`MIN_SHARED_TOKENS`], and never the whole prompt, whose last token must
/// still run to give the logits of the first new one.
pub fn best_shared_prefix<'a>(prompt: &[u32], candidates: impl Iterator<Item = &'a [u32]>) -> Option<(usize, usize)> {
    let usable = prompt.len().saturating_sub(1);
    candidates
        .enumerate()
        .map(|(i, held)| (i, prompt.iter().zip(held).take_while(|(a, b)| a == b).count().min(usable)))
        .filter(|&(_, shared)| shared >= MIN_SHARED_TOKENS)
        .max_by_key(|&(i, shared)| (shared, std::cmp::Reverse(i)))
}

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use proptest::prelude::*;

    use super::*;
    use crate::builtin::host::{LoadOptions, load_gguf};
    use crate::builtin::kv_cache::PAGE_TOKENS;
    use crate::builtin::transformer::BatchItem;
    use crate::fixtures::TinyModel;

    /// A prompt run on a shared head, or on a retained cache cut back to
    /// it, gives exactly the logits of the same prompt run in the same two
    /// chunks on one cache; the tiny Gemma's sliding window (8 tokens) is
    /// shorter than the head. Heads within one page and across pages.
    #[test]
    fn a_reused_head_gives_the_logits_of_the_prompt_computed_in_full() {
        for (model, (head, len)) in [TinyModel::qwen2(), TinyModel::gemma3()]
            .into_iter()
            .flat_map(|m| [(m.clone(), (30, 40)), (m, (PAGE_TOKENS + 20, 2 * PAGE_TOKENS + 5))])
        {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("model.gguf");
            model.write(&path).unwrap();
            let loaded = load_gguf(&path, &LoadOptions::default(), &Device::Cpu).unwrap();
            let model = &loaded.transformer;
            let vocab = model.vocab_size() as u32;
            let prompt: Vec<u32> = (0..len as u32).map(|i| (i * 7 + 3) % vocab).collect();
            let run = |cache: &mut SeqCache, tokens: &[u32]| -> Vec<f32> {
                let mut batch = [BatchItem { tokens, cache, want_logits: true }];
                let logits = model.forward(&mut batch).unwrap().unwrap();
                logits.flatten_all().unwrap().to_vec1().unwrap()
            };
            let mut computed = model.new_cache(4 * PAGE_TOKENS);
            run(&mut computed, &prompt[..head]);
            let expected = run(&mut computed, &prompt[head..]);
            // The donor shares the head with the prompt, then goes elsewhere.
            let mut donor = model.new_cache(4 * PAGE_TOKENS);
            run(&mut donor, &[&prompt[..head], &[1, 2, 3]].concat());
            let mut sharer = SeqCache::prefix_of(&donor, head).unwrap();
            let shared = run(&mut sharer, &prompt[head..]);
            drop(sharer);
            donor.truncate(head);
            let taken_over = run(&mut donor, &prompt[head..]);
            let arch = loaded.host.cfg.arch;
            assert_eq!(shared, expected, "{arch:?}: a shared head of {head}");
            assert_eq!(taken_over, expected, "{arch:?}: a retained cache cut back to the head of {head}");
        }
    }

    fn ids(range: std::ops::Range<u32>) -> Vec<u32> {
        range.collect()
    }

    #[test]
    fn the_longest_shared_head_wins_and_the_last_prompt_token_always_runs() {
        let prompt = ids(0..40);
        let short = ids(0..20);
        let long = [ids(0..30), vec![99]].concat();
        let whole = ids(0..60);
        assert_eq!(best_shared_prefix(&prompt, [short.as_slice(), long.as_slice()].into_iter()), Some((1, 30)));
        assert_eq!(best_shared_prefix(&prompt, [whole.as_slice()].into_iter()), Some((0, 39)));
    }

    #[test]
    fn a_head_below_the_minimum_is_computed_again() {
        let prompt = ids(0..40);
        let template = ids(0..(MIN_SHARED_TOKENS as u32 - 1));
        assert_eq!(best_shared_prefix(&prompt, [template.as_slice()].into_iter()), None);
    }

    proptest! {
        #[test]
        fn the_reused_head_is_shared_and_leaves_a_token_to_run(
            head in proptest::collection::vec(0u32..3, 0..60),
            tail in proptest::collection::vec(0u32..3, 0..10),
            held in proptest::collection::vec((0usize..61, proptest::collection::vec(0u32..3, 0..10)), 0..5),
        ) {
            // Candidates share heads of every length with the prompt, most of them long enough to reuse.
            let prompt = [head.clone(), tail].concat();
            let held: Vec<Vec<u32>> =
                held.into_iter().map(|(cut, rest)| [&head[..cut.min(head.len())], &rest[..]].concat()).collect();
            let found = best_shared_prefix(&prompt, held.iter().map(Vec::as_slice));
            let shared = |h: &[u32]| prompt.iter().zip(h).take_while(|(a, b)| a == b).count().min(prompt.len().saturating_sub(1));
            let best = held.iter().map(|h| shared(h)).max().unwrap_or(0);
            match found {
                Some((i, n)) => {
                    prop_assert_eq!(n, best);
                    prop_assert_eq!(&held[i][..n], &prompt[..n]);
                    prop_assert!(n >= MIN_SHARED_TOKENS && n < prompt.len());
                }
                None => prop_assert!(best < MIN_SHARED_TOKENS),
            }
        }
    }
}
