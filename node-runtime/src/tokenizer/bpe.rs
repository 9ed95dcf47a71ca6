//! GPT-2 style byte-level BPE: bytes map to printable characters, words are
//! merged pairwise in the order of the merge list.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::byte_level::{byte_char, text_bytes};
use super::{PreTokenizer, TokenType, TokenizerError};

pub struct BpeModel {
    pre: PreTokenizer,
    /// (left id, right id) → (merge rank, merged id); lower rank merges first.
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Token id of each byte's character, if the vocabulary has it.
    byte_ids: [Option<u32>; 256],
    /// Whole-word lookups, for pre-tokenizers that skip merging known words.
    ids: HashMap<String, u32>,
}

impl BpeModel {
    pub fn new(ids: &HashMap<String, u32>, merge_list: &[String], pre: PreTokenizer) -> Result<Self, TokenizerError> {
        if merge_list.is_empty() {
            return Err(TokenizerError::Missing("tokenizer.ggml.merges"));
        }
        let mut merges = HashMap::with_capacity(merge_list.len());
        for (rank, merge) in merge_list.iter().enumerate() {
            let Some((left, right)) = merge.split_once(' ') else {
                return Err(TokenizerError::Inconsistent(format!("merge {merge:?} has no space")));
            };
            let (Some(&l), Some(&r), Some(&m)) = (ids.get(left), ids.get(right), ids.get(&format!("{left}{right}")))
            else {
                // A merge whose parts are not tokens can never apply.
                continue;
            };
            merges.entry((l, r)).or_insert((rank as u32, m));
        }
        let mut byte_ids = [None; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = ids.get(&byte_char(b as u8).to_string()).copied();
        }
        let ids = if pre.ignore_merges { ids.clone() } else { HashMap::new() };
        Ok(Self { pre, merges, byte_ids, ids })
    }

    /// Appends the ids of `text` (no special tokens in it) to `out`.
    pub fn encode(&self, text: &str, out: &mut Vec<u32>) {
        for word in self.pre.split(text) {
            if self.pre.ignore_merges {
                let mapped: String = word.bytes().map(byte_char).collect();
                if let Some(&id) = self.ids.get(&mapped) {
                    out.push(id);
                    continue;
                }
            }
            self.encode_word(word, out);
        }
    }

    fn encode_word(&self, word: &str, out: &mut Vec<u32>) {
        let mut symbols: Vec<u32> = word.bytes().filter_map(|b| self.byte_ids[b as usize]).collect();
        if symbols.len() > 1 {
            merge_symbols(&mut symbols, &self.merges);
        }
        out.extend(symbols);
    }
}

/// Applies merges to `symbols` in rank order, leftmost first among equals,
/// with a heap so long words stay O(n log n).
fn merge_symbols(symbols: &mut Vec<u32>, merges: &HashMap<(u32, u32), (u32, u32)>) {
    let n = symbols.len();
    let mut ids: Vec<Option<u32>> = symbols.iter().map(|&s| Some(s)).collect();
    let mut next: Vec<usize> = (1..=n).collect();
    let mut prev: Vec<Option<usize>> = (0..n).map(|i| i.checked_sub(1)).collect();
    let mut heap = BinaryHeap::new();
    let push = |heap: &mut BinaryHeap<_>, ids: &[Option<u32>], at: usize, right: usize| {
        if let (Some(Some(l)), Some(Some(r))) = (ids.get(at), ids.get(right))
            && let Some(&(rank, merged)) = merges.get(&(*l, *r))
        {
            heap.push(Reverse((rank, at, *l, *r, merged)));
        }
    };
    for i in 0..n.saturating_sub(1) {
        push(&mut heap, &ids, i, i + 1);
    }
    while let Some(Reverse((_, at, l, r, merged))) = heap.pop() {
        let right = next[at];
        // Skip pairs that an earlier merge already changed.
        if ids[at] != Some(l) || right >= n || ids[right] != Some(r) {
            continue;
        }
        ids[at] = Some(merged);
        ids[right] = None;
        next[at] = next[right];
        if next[at] < n {
            prev[next[at]] = Some(at);
            push(&mut heap, &ids, at, next[at]);
        }
        if let Some(p) = prev[at] {
            push(&mut heap, &ids, p, at);
        }
    }
    symbols.clear();
    symbols.extend(ids.into_iter().flatten());
}

/// Bytes a byte-level token renders as.
pub fn piece_bytes(text: &str, ty: TokenType) -> Vec<u8> {
    match ty {
        TokenType::Control | TokenType::Unused => Vec::new(),
        TokenType::UserDefined => text.as_bytes().to_vec(),
        _ => text_bytes(text).unwrap_or_else(|| text.as_bytes().to_vec()),
    }
}
