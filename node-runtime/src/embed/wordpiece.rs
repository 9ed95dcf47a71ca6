//! BERT's tokenizer from a Hugging Face `tokenizer.json`, run by
//! `tokenizers` (the BERT normalizer, pre-split and WordPiece as the file
//! declares them), framed as `[CLS] … [SEP]` and cut to fit here, so that
//! token ids sent instead of text are framed the same way.

use crate::{Error, Result};

/// A BERT WordPiece tokenizer.
pub struct WordPiece {
    inner: tokenizers::Tokenizer,
    cls: u32,
    sep: u32,
}

impl std::fmt::Debug for WordPiece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordPiece").field("vocab_size", &self.vocab_size()).finish_non_exhaustive()
    }
}

fn invalid(what: impl std::fmt::Display) -> Error {
    Error::Unservable(format!("tokenizer.json: {what}"))
}

impl WordPiece {
    /// Reads a `tokenizer.json` with a `WordPiece` model.
    ///
    /// # Errors
    /// [`Error::Unservable`] when it is another kind of tokenizer or lacks
    /// the special tokens BERT needs.
    pub fn from_json(text: &str) -> Result<Self> {
        let mut inner: tokenizers::Tokenizer = text.parse().map_err(invalid)?;
        if !matches!(inner.get_model(), tokenizers::ModelWrapper::WordPiece(_)) {
            return Err(invalid("the model is not WordPiece"));
        }
        // Framing and cutting are done here, the same for text and ids.
        inner.with_truncation(None).map_err(invalid)?;
        inner.with_padding(None);
        let id =
            |token: &str| inner.token_to_id(token).ok_or_else(|| invalid(format!("{token} is not in the vocabulary")));
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        Ok(Self { inner, cls, sep })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// `[CLS]`, the tokens of `text` (cut to fit), `[SEP]`: at most `max_len` ids.
    pub fn encode(&self, text: &str, max_len: usize) -> Vec<u32> {
        self.frame(self.pieces(text), max_len)
    }

    /// The tokens of `text`, unframed.
    fn pieces(&self, text: &str) -> Vec<u32> {
        match self.inner.encode_fast(text, false) {
            Ok(encoding) => encoding.get_ids().to_vec(),
            // WordPiece maps what it cannot spell to [UNK]; it fails only
            // when the file names an unknown token it lacks.
            Err(e) => {
                tracing::error!(error = %e, "Text could not be tokenized");
                Vec::new()
            }
        }
    }

    /// A pair for a cross-encoder: `[CLS] first [SEP] second [SEP]`, the
    /// longer of the two cut first until it fits `max_len`, and where the
    /// second segment starts (its tokens have token type 1).
    pub fn encode_pair(&self, first: &str, second: &str, max_len: usize) -> (Vec<u32>, usize) {
        let (mut a, mut b) = (self.pieces(first), self.pieces(second));
        let room = max_len.saturating_sub(3).max(2);
        while a.len() + b.len() > room {
            if a.len() > b.len() {
                a.pop()
            } else {
                b.pop()
            };
        }
        let mut ids = Vec::with_capacity(a.len() + b.len() + 3);
        ids.push(self.cls);
        ids.extend(a);
        ids.push(self.sep);
        let second_starts = ids.len();
        ids.extend(b);
        ids.push(self.sep);
        (ids, second_starts)
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
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn tokenizer() -> WordPiece {
        let vocab: Vec<&str> =
            vec!["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "un", "##aff", "##able", ",", "!", "cafe", "中"];
        let vocab: serde_json::Map<String, Value> =
            vocab.iter().enumerate().map(|(i, t)| ((*t).to_owned(), Value::from(i))).collect();
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": {"type": "BertNormalizer", "clean_text": true, "lowercase": true, "strip_accents": null, "handle_chinese_chars": true},
            "pre_tokenizer": {"type": "BertPreTokenizer"}, "post_processor": null, "decoder": null,
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": vocab},
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

    #[test]
    fn a_pair_is_framed_with_two_seps_and_the_longer_side_is_cut_first() {
        let t = tokenizer();
        assert_eq!(t.encode_pair("hello", "world!", 64), (vec![2, 4, 3, 5, 10, 3], 3));
        // Room for 3 pieces: the longer first segment loses one, then the pair is even.
        assert_eq!(t.encode_pair("hello hello hello", "world", 6), (vec![2, 4, 4, 3, 5, 3], 4));
    }

    #[test]
    fn another_model_kind_is_refused() {
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
            "pre_tokenizer": null, "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "vocab": {"[UNK]": 0}, "unk_token": "[UNK]"},
        });
        let err = WordPiece::from_json(&json.to_string()).unwrap_err();
        assert!(err.to_string().contains("not WordPiece"), "{err}");
    }
}
