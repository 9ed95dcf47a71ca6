//! SentencePiece-style BPE (`tokenizer.ggml.model = llama`): characters merge
//! by the score of the token they form, highest first; characters no token
//! covers fall back to `<0xAB>` byte tokens.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::TokenType;

/// SentencePiece's visible space.
const SPACE: &str = "\u{2581}";

pub struct SpmModel {
    ids: HashMap<String, u32>,
    scores: Vec<f32>,
    byte_ids: [Option<u32>; 256],
    unknown: Option<u32>,
}

#[derive(PartialEq)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl Eq for Bigram {}

impl Ord for Bigram {
    /// Highest score first; among equal scores, the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

impl SpmModel {
    pub fn new(ids: HashMap<String, u32>, scores: Vec<f32>, unknown: Option<u32>) -> Self {
        let mut byte_ids = [None; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            let hex = format!("<0x{b:02X}>");
            *slot = ids.get(&hex).copied().or_else(|| {
                // Vocabularies without byte tokens may hold the byte itself.
                let raw = [b as u8];
                std::str::from_utf8(&raw).ok().and_then(|s| ids.get(s).copied())
            });
        }
        Self { ids, scores, byte_ids, unknown }
    }

    /// Appends the ids of `text` (no special tokens in it) to `out`.
    pub fn encode(&self, text: &str, add_space_prefix: bool, out: &mut Vec<u32>) {
        let mut escaped = String::with_capacity(text.len() + 3);
        if add_space_prefix {
            escaped.push_str(SPACE);
        }
        escaped.push_str(&text.replace(' ', SPACE));
        self.encode_escaped(&escaped, out);
    }

    fn encode_escaped(&self, text: &str, out: &mut Vec<u32>) {
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            symbols.push(Symbol { start, len: c.len_utf8(), prev: i.checked_sub(1), next: None });
            if i > 0 {
                symbols[i - 1].next = Some(i);
            }
        }
        let mut queue = BinaryHeap::new();
        for i in 1..symbols.len() {
            self.try_bigram(text, &symbols, i - 1, i, &mut queue);
        }
        while let Some(bigram) = queue.pop() {
            let (l, r) = (&symbols[bigram.left], &symbols[bigram.right]);
            // One side already merged into something else: stale entry.
            if l.len == 0 || r.len == 0 || l.len + r.len != bigram.len {
                continue;
            }
            let right_next = symbols[bigram.right].next;
            symbols[bigram.left].len += symbols[bigram.right].len;
            symbols[bigram.right].len = 0;
            symbols[bigram.left].next = right_next;
            if let Some(n) = right_next {
                symbols[n].prev = Some(bigram.left);
            }
            if let Some(p) = symbols[bigram.left].prev {
                self.try_bigram(text, &symbols, p, bigram.left, &mut queue);
            }
            if let Some(n) = right_next {
                self.try_bigram(text, &symbols, bigram.left, n, &mut queue);
            }
        }
        let mut at = if symbols.is_empty() { None } else { Some(0) };
        while let Some(i) = at {
            let s = &symbols[i];
            let piece = &text[s.start..s.start + s.len];
            match self.ids.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for b in piece.bytes() {
                        if let Some(id) = self.byte_ids[b as usize].or(self.unknown) {
                            out.push(id);
                        }
                    }
                }
            }
            at = s.next;
        }
    }

    fn try_bigram(&self, text: &str, symbols: &[Symbol], left: usize, right: usize, queue: &mut BinaryHeap<Bigram>) {
        let start = symbols[left].start;
        let len = symbols[left].len + symbols[right].len;
        if let Some(&id) = self.ids.get(&text[start..start + len]) {
            let score = self.scores.get(id as usize).copied().unwrap_or(f32::NEG_INFINITY);
            queue.push(Bigram { score, left, right, len });
        }
    }
}

/// Bytes a SentencePiece token renders as.
pub fn piece_bytes(text: &str, ty: TokenType) -> Vec<u8> {
    match ty {
        TokenType::Control | TokenType::Unused | TokenType::Unknown => Vec::new(),
        TokenType::UserDefined => text.as_bytes().to_vec(),
        TokenType::Byte => parse_byte_token(text).map_or_else(|| text.as_bytes().to_vec(), |b| vec![b]),
        TokenType::Normal => text.replace(SPACE, " ").into_bytes(),
    }
}

fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}
