//! A Hugging Face directory's tokenizer: `tokenizer.json` run by the
//! `tokenizers` library exactly as written, with the token types, BOS and
//! end-of-turn ids read from `tokenizer_config.json` and
//! `generation_config.json` the way transformers reads them.
//!
//! Special tokens stay split out by [`super::SpecialMatcher`] (markup counts
//! only where a template wrote it), so the library is told to treat them as
//! plain text when they reach it.

use std::str::FromStr;

use ahash::AHashMap;
use serde_json::Value;

use super::{Family, Parts, TokenType, Tokenizer, TokenizerError, byte_token, mark_end_of_turn_control};

/// The files of a model directory a tokenizer is read from.
#[derive(Debug, Clone, Copy, Default)]
pub struct HfTokenizerFiles<'a> {
    /// `tokenizer.json`.
    pub tokenizer: &'a str,
    /// `tokenizer_config.json`: BOS, EOS, whether BOS is added.
    pub tokenizer_config: Option<&'a str>,
    /// `generation_config.json`: the ids that end a generation.
    pub generation_config: Option<&'a str>,
}

fn inconsistent(what: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Inconsistent(what.to_string())
}

fn parse(name: &str, text: Option<&str>) -> Result<Value, TokenizerError> {
    text.map_or(Ok(Value::Null), |t| serde_json::from_str(t).map_err(|e| inconsistent(format!("{name}: {e}"))))
}

impl Tokenizer {
    /// Builds the tokenizer of a Hugging Face model directory.
    ///
    /// # Errors
    /// A [`TokenizerError`] when a file does not parse, the tokenizer is not
    /// a BPE model, or a named special token is not in the vocabulary.
    pub fn from_hf(files: HfTokenizerFiles<'_>) -> Result<Self, TokenizerError> {
        let json = parse("tokenizer.json", Some(files.tokenizer))?;
        let config = parse("tokenizer_config.json", files.tokenizer_config)?;
        let generation = parse("generation_config.json", files.generation_config)?;
        let kind = json["model"]["type"].as_str().unwrap_or_default();
        if kind != "BPE" {
            return Err(TokenizerError::UnsupportedModel(format!("{kind} (tokenizer.json)")));
        }
        let mut model = tokenizers::Tokenizer::from_str(files.tokenizer)
            .map_err(|e| inconsistent(format!("tokenizer.json: {e}")))?;
        // Markup is split out before text reaches the library; what reaches it is text.
        model.set_encode_special_tokens(true);
        let ids: AHashMap<String, u32> = model.get_vocab(true).into_iter().collect();
        let n = ids.values().max().map_or(0, |&m| m as usize + 1);
        if n == 0 {
            return Err(TokenizerError::Missing("the vocabulary of tokenizer.json"));
        }
        let mut texts = vec![String::new(); n];
        for (text, &id) in &ids {
            texts[id as usize].clone_from(text);
        }
        let byte_fallback = json["model"]["byte_fallback"].as_bool() == Some(true);
        let unknown = json["model"]["unk_token"].as_str();
        let mut types: Vec<TokenType> = texts
            .iter()
            .map(|text| match text.as_str() {
                "" => TokenType::Unused,
                t if Some(t) == unknown => TokenType::Unknown,
                t if byte_fallback && byte_token(t).is_some() => TokenType::Byte,
                _ => TokenType::Normal,
            })
            .collect();
        for (id, added) in model.get_added_tokens_decoder() {
            if let Some(ty) = types.get_mut(id as usize) {
                *ty = if added.special { TokenType::Control } else { TokenType::UserDefined };
            }
        }
        mark_end_of_turn_control(&ids, &mut types);
        let token = |key: &str| -> Result<Option<u32>, TokenizerError> {
            let value = &config[key];
            let Some(text) = value.as_str().or_else(|| value["content"].as_str()) else { return Ok(None) };
            ids.get(text)
                .copied()
                .map(Some)
                .ok_or_else(|| inconsistent(format!("{key} {text:?} is not in the vocabulary")))
        };
        let (bos, eos) = (token("bos_token")?, token("eos_token")?);
        let add_bos = match config["add_bos_token"].as_bool() {
            Some(add) => add,
            // Llama 3 says it in the post-processor: `<|begin_of_text|>` before every text.
            None => bos.is_some_and(|bos| template_starts_with(&json["post_processor"], &texts[bos as usize])),
        };
        let mut ends: Vec<u32> = eos.into_iter().collect();
        for id in end_ids(&generation["eos_token_id"]) {
            if (id as usize) < n && !ends.contains(&id) {
                ends.push(id);
            }
        }
        let family = if mentions(&json["pre_tokenizer"], "ByteLevel") || mentions(&json["decoder"], "ByteLevel") {
            Family::ByteLevel
        } else {
            Family::SentencePiece
        };
        Ok(Self::assemble(Parts { model, family, texts, types, ids: &ids, bos, eos, ends, add_bos }))
    }
}

/// `generation_config.json`'s `eos_token_id`: one id or a list.
fn end_ids(value: &Value) -> Vec<u32> {
    let one = |v: &Value| v.as_u64().and_then(|id| u32::try_from(id).ok());
    match value {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        other => one(other).into_iter().collect(),
    }
}

/// Whether a component (a pre-tokenizer, a decoder) is or contains one of `kind`.
fn mentions(component: &Value, kind: &str) -> bool {
    match component {
        Value::Object(map) => {
            map.get("type").and_then(Value::as_str) == Some(kind) || map.values().any(|v| mentions(v, kind))
        }
        Value::Array(items) => items.iter().any(|v| mentions(v, kind)),
        _ => false,
    }
}

/// Whether a post-processor's template for a single text starts with the special token `text`.
fn template_starts_with(processor: &Value, text: &str) -> bool {
    match processor {
        Value::Object(map) => {
            let first = map.get("single").and_then(|s| s.get(0));
            first.is_some_and(|f| f["SpecialToken"]["id"].as_str() == Some(text))
                || map.get("processors").is_some_and(|p| template_starts_with(p, text))
        }
        Value::Array(items) => items.iter().any(|p| template_starts_with(p, text)),
        _ => false,
    }
}
