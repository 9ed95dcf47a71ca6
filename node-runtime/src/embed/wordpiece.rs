//! BERT's tokenizer from a Hugging Face `tokenizer.json`: the BERT
//! normalizer (clean, split CJK, strip accents, lowercase), whitespace and
//! punctuation pre-splitting, greedy longest-match WordPiece, and the
//! `[CLS] … [SEP]` frame.

use std::collections::HashMap;

use serde_json::Value;
use unicode_categories::UnicodeCategories;
use unicode_normalization::UnicodeNormalization;

use crate::{Error, Result};

/// A BERT WordPiece tokenizer.
#[derive(Debug)]
pub struct WordPiece {
    vocab: HashMap<String, u32>,
    unknown: u32,
    cls: u32,
    sep: u32,
    prefix: String,
    max_word_chars: usize,
    lowercase: bool,
    strip_accents: bool,
    split_cjk: bool,
}

fn invalid(what: impl std::fmt::Display) -> Error {
    Error::Unservable(format!("tokenizer.json: {what}"))
}

impl WordPiece {
    /// Reads a `tokenizer.json` with a `WordPiece` model.
    ///
    /// # Errors
    /// [`Error::InvalidModel`] when it is another kind of tokenizer or lacks
    /// the special tokens BERT needs.
    pub fn from_json(text: &str) -> Result<Self> {
        let json: Value = serde_json::from_str(text).map_err(invalid)?;
        let model = &json["model"];
        if model["type"] != "WordPiece" {
            return Err(invalid(format!("model type {} is not WordPiece", model["type"])));
        }
        let vocab: HashMap<String, u32> = model["vocab"]
            .as_object()
            .ok_or_else(|| invalid("no vocab"))?
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), u32::try_from(v.as_u64()?).ok()?)))
            .collect();
        let id =
            |token: &str| vocab.get(token).copied().ok_or_else(|| invalid(format!("{token} is not in the vocabulary")));
        let unknown = id(model["unk_token"].as_str().unwrap_or("[UNK]"))?;
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        let normalizer = &json["normalizer"];
        let lowercase = normalizer["lowercase"].as_bool().unwrap_or(true);
        Ok(Self {
            unknown,
            cls,
            sep,
            prefix: model["continuing_subword_prefix"].as_str().unwrap_or("##").to_owned(),
            max_word_chars: model["max_input_chars_per_word"].as_u64().map_or(100, |n| n as usize),
            // BERT's normalizer strips accents when lowercasing unless told otherwise.
            strip_accents: normalizer["strip_accents"].as_bool().unwrap_or(lowercase),
            split_cjk: normalizer["handle_chinese_chars"].as_bool().unwrap_or(true),
            lowercase,
            vocab,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.values().max().map_or(0, |&m| m as usize + 1)
    }

    /// `[CLS]`, the tokens of `text` (cut to fit), `[SEP]`: at most `max_len` ids.
    pub fn encode(&self, text: &str, max_len: usize) -> Vec<u32> {
        let mut ids = Vec::new();
        for word in pre_split(&self.normalize(text)) {
            self.word_pieces(&word, &mut ids);
        }
        self.frame(ids, max_len)
    }

    /// `[CLS]`, `ids` (cut to fit), `[SEP]`: at most `max_len` ids.
    pub fn frame(&self, ids: Vec<u32>, max_len: usize) -> Vec<u32> {
        let room = max_len.saturating_sub(2).max(1);
        let mut framed = Vec::with_capacity(ids.len().min(room) + 2);
        framed.push(self.cls);
        framed.extend(ids.into_iter().take(room));
        framed.push(self.sep);
        framed
    }

    fn normalize(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            if c == '\0' || c == '\u{FFFD}' || (c.is_control() && !c.is_whitespace()) {
                continue;
            }
            if c.is_whitespace() {
                out.push(' ');
            } else if self.split_cjk && is_cjk(c) {
                out.extend([' ', c, ' ']);
            } else {
                out.push(c);
            }
        }
        if self.strip_accents {
            out = out.nfd().filter(|c| !c.is_mark_nonspacing()).collect();
        }
        if self.lowercase {
            out = out.to_lowercase();
        }
        out
    }

    fn word_pieces(&self, word: &str, ids: &mut Vec<u32>) {
        let chars: Vec<(usize, char)> = word.char_indices().collect();
        if chars.len() > self.max_word_chars {
            ids.push(self.unknown);
            return;
        }
        let mut pieces = Vec::new();
        let mut start = 0;
        while start < chars.len() {
            let from = chars[start].0;
            let found = (start + 1..=chars.len()).rev().find_map(|end| {
                let to = chars.get(end).map_or(word.len(), |c| c.0);
                let piece = &word[from..to];
                let id =
                    if start == 0 { self.vocab.get(piece) } else { self.vocab.get(&format!("{}{piece}", self.prefix)) };
                id.map(|&id| (id, end))
            });
            let Some((id, end)) = found else {
                // One unknown piece makes the whole word unknown, as in BERT.
                ids.push(self.unknown);
                return;
            };
            pieces.push(id);
            start = end;
        }
        ids.extend(pieces);
    }
}

/// Splits on whitespace and makes every punctuation character its own word.
fn pre_split(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if c.is_whitespace() {
            words.extend((!current.is_empty()).then(|| std::mem::take(&mut current)));
        } else if is_punctuation(c) {
            words.extend((!current.is_empty()).then(|| std::mem::take(&mut current)));
            words.push(c.to_string());
        } else {
            current.push(c);
        }
    }
    words.extend((!current.is_empty()).then_some(current));
    words
}

/// BERT's punctuation: all non-alphanumeric ASCII symbols and Unicode `P*`.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || c.is_punctuation()
}

/// The CJK Unified Ideographs blocks BERT surrounds with spaces.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> WordPiece {
        let vocab: Vec<&str> =
            vec!["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "un", "##aff", "##able", ",", "!", "cafe", "中"];
        let vocab: serde_json::Map<String, Value> =
            vocab.iter().enumerate().map(|(i, t)| ((*t).to_owned(), Value::from(i))).collect();
        let json = serde_json::json!({
            "normalizer": {"type": "BertNormalizer", "lowercase": true, "strip_accents": null, "handle_chinese_chars": true},
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "vocab": vocab},
        });
        WordPiece::from_json(&json.to_string()).unwrap()
    }

    #[test]
    fn words_split_into_the_longest_pieces_inside_cls_and_sep() {
        let t = tokenizer();
        assert_eq!(t.encode("Hello, unaffable world!", 64), [2, 4, 9, 6, 7, 8, 5, 10, 3]);
    }

    #[test]
    fn accents_are_stripped_cjk_split_and_unknown_words_are_one_unk() {
        let t = tokenizer();
        assert_eq!(t.encode("Café中xyz", 64), [2, 11, 12, 1, 3]);
    }

    #[test]
    fn long_inputs_are_cut_but_keep_their_sep() {
        let t = tokenizer();
        assert_eq!(t.encode("hello hello hello hello", 4), [2, 4, 4, 3]);
    }
}
