//! Prefix caching: a sequence that ends leaves its KV cache in one of the
//! worker's free places, so a new prompt that starts with the same tokens (a
//! shared system prompt, the earlier turns of a chat) copies their keys and
//! values instead of computing them again. A new prompt may also share the
//! head of a sequence still running.
//!
//! Retained caches live only in places no sequence uses: the worker's KV
//! memory stays bounded by its sequence limit, and the oldest retained cache
//! makes way first.

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

    /// The retained caches as (tokens held, cache).
    pub fn iter(&self) -> impl Iterator<Item = (&[u32], &SeqCache)> {
        self.entries.iter().map(|(tokens, cache)| (tokens.as_slice(), cache))
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
    use proptest::prelude::*;

    use super::*;

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
            prompt in proptest::collection::vec(0u32..3, 0..60),
            held in proptest::collection::vec(proptest::collection::vec(0u32..3, 0..60), 0..5),
        ) {
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
