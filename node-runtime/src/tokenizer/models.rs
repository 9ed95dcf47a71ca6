//! The `tokenizers::Tokenizer` a GGUF vocabulary describes, read the way
//! llama.cpp reads it (as mistral.rs builds it from the same metadata):
//!
//! - `gpt2`: byte-level BPE: the `tokenizer.ggml.pre` split, GPT-2's byte
//!   to character mapping, then the merges in the file's order.
//! - `llama`: SentencePiece BPE: spaces become `▁` (with one in front of
//!   each text fragment when `add_space_prefix`), then adjacent pieces merge
//!   into the vocabulary entry with the highest score, with `<0xAB>` byte
//!   tokens for what the vocabulary cannot spell. The merges are derived
//!   from the scores: every split of every entry into two entries is a
//!   merge, ranked by the entry's score, which is the order llama.cpp's
//!   SentencePiece tokenizer merges in.

use ahash::AHashMap;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace, Sequence as Normalizers};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizers;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

use super::pretokenize::PreSplit;
use super::{TokenizerError, TokenizerSpec};

/// SentencePiece's visible space.
pub(super) const SPACE: char = '\u{2581}';

fn library(e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Inconsistent(e.to_string())
}

/// Each token text's id; a text listed twice keeps its last id, as
/// llama.cpp's `token_to_id` does.
pub(super) fn vocabulary(spec: &TokenizerSpec) -> AHashMap<String, u32> {
    spec.tokens.iter().enumerate().map(|(id, text)| (text.clone(), id as u32)).collect()
}

/// The regex half of a byte-level split (the words, before bytes become characters).
pub(super) fn regex_split(split: PreSplit) -> Result<Split, TokenizerError> {
    Split::new(SplitPattern::Regex(split.pattern.to_owned()), SplitDelimiterBehavior::Isolated, false).map_err(library)
}

/// How a byte-level BPE vocabulary splits text into words.
pub(super) fn word_split(split: PreSplit) -> Result<PreTokenizers, TokenizerError> {
    let bytes = ByteLevel::new(false, false, false);
    Ok(PreTokenizers::new(vec![PreTokenizerWrapper::Split(regex_split(split)?), PreTokenizerWrapper::ByteLevel(bytes)]))
}

/// A `gpt2` vocabulary's tokenizer.
pub(super) fn byte_level_bpe(
    spec: &TokenizerSpec,
    vocab: AHashMap<String, u32>,
) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let split = PreSplit::from_gguf(spec.pre.as_deref())?;
    if spec.merges.is_empty() {
        return Err(TokenizerError::Missing("tokenizer.ggml.merges"));
    }
    let merges = spec
        .merges
        .iter()
        .map(|m| {
            let (a, b) = m.split_once(' ').ok_or_else(|| TokenizerError::Inconsistent(format!("merge {m:?}")))?;
            Ok((a.to_owned(), b.to_owned()))
        })
        .collect::<Result<Vec<_>, TokenizerError>>()?;
    let bpe =
        BPE::builder().vocab_and_merges(vocab, merges).ignore_merges(split.ignore_merges).build().map_err(library)?;
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(word_split(split)?));
    Ok(tokenizer)
}

/// A `llama` vocabulary's tokenizer.
pub(super) fn sentencepiece_bpe(
    spec: &TokenizerSpec,
    vocab: AHashMap<String, u32>,
) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let n = spec.tokens.len();
    if spec.scores.len() != n {
        return Err(TokenizerError::Inconsistent(format!("{} scores for {n} tokens", spec.scores.len())));
    }
    let merges = merges_by_score(spec, &vocab);
    let mut builder = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true);
    if let Some(unknown) = spec.unknown {
        builder = builder.unk_token(spec.tokens[unknown as usize].clone());
    }
    let mut tokenizer = tokenizers::Tokenizer::new(builder.build().map_err(library)?);
    let mut normalizers = Vec::new();
    if spec.add_space_prefix {
        normalizers.push(NormalizerWrapper::Prepend(Prepend::new(SPACE.to_string())));
    }
    normalizers.push(NormalizerWrapper::Replace(Replace::new(" ", SPACE.to_string()).map_err(library)?));
    tokenizer.with_normalizer(Some(Normalizers::new(normalizers))).map_err(library)?;
    Ok(tokenizer)
}

/// Every way to build an entry from two entries, highest score first
/// (ties: lower id first, then the shorter left half).
fn merges_by_score(spec: &TokenizerSpec, vocab: &AHashMap<String, u32>) -> Vec<(String, String)> {
    let mut merges: Vec<(f32, u32, &str, &str)> = Vec::new();
    for (id, text) in spec.tokens.iter().enumerate() {
        if vocab.get(text) != Some(&(id as u32)) {
            continue;
        }
        for (cut, _) in text.char_indices().skip(1) {
            let (left, right) = text.split_at(cut);
            if vocab.contains_key(left) && vocab.contains_key(right) {
                merges.push((spec.scores[id], id as u32, left, right));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.len().cmp(&b.2.len())));
    merges.into_iter().map(|(_, _, l, r)| (l.to_owned(), r.to_owned())).collect()
}
