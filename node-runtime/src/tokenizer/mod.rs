//! Tokenizers read from GGUF metadata: GPT-2 style byte-level BPE
//! (`tokenizer.ggml.model = gpt2`) and SentencePiece style BPE (`llama`),
//! run by Hugging Face's `tokenizers` (built in `models.rs`); and a Hugging
//! Face directory's own `tokenizer.json`, run as written (`hf.rs`).
//!
//! Both follow llama.cpp's reading of the same metadata, so a prompt becomes
//! the same token ids here as there. Special tokens are split out here
//! rather than registered as `tokenizers` added tokens, because whether
//! control-token markup counts is decided per call (a chat template's
//! markup does, a user's text does not), and `tokenizers` decides it per
//! tokenizer.

pub(crate) mod byte_level;
mod hf;
mod models;
mod pretokenize;
mod special;

pub use hf::HfTokenizerFiles;
pub use pretokenize::PreSplit;

use self::models::SPACE;
use self::special::SpecialMatcher;

/// Why a tokenizer could not be built from a model file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer metadata is missing {0}")]
    Missing(&'static str),
    #[error("tokenizer metadata is inconsistent: {0}")]
    Inconsistent(String),
    #[error("tokenizer model {0:?} is not supported (supported: gpt2, llama)")]
    UnsupportedModel(String),
    #[error("tokenizer pre-split tokenizer.ggml.pre = {0:?} is not supported (supported: {known})", known = pretokenize::KNOWN)]
    UnsupportedPre(String),
}

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Normal,
    Unknown,
    /// Markup such as `<|im_start|>`: only produced from text when special
    /// tokens are parsed, and never rendered into output text.
    Control,
    /// Added tokens such as `<tool_call>`: always matched as a whole and rendered as text.
    UserDefined,
    Unused,
    /// `<0xAB>` byte-fallback tokens of SentencePiece vocabularies.
    Byte,
}

impl TokenType {
    pub fn from_gguf(raw: i32) -> Self {
        match raw {
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Normal,
        }
    }
}

/// Everything a tokenizer is built from, as read from GGUF metadata.
#[derive(Debug, Clone, Default)]
pub struct TokenizerSpec {
    /// `tokenizer.ggml.model`: `gpt2` or `llama`.
    pub model: String,
    /// `tokenizer.ggml.pre`: which pre-tokenizer split a `gpt2` model uses.
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    pub token_types: Vec<TokenType>,
    /// SentencePiece merge priorities (higher merges first).
    pub scores: Vec<f32>,
    /// BPE merges, `"a b"`, highest priority first.
    pub merges: Vec<String>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub unknown: Option<u32>,
    pub add_bos: bool,
    pub add_space_prefix: bool,
}

/// A model's tokenizer: text to ids and ids back to bytes.
pub struct Tokenizer {
    model: tokenizers::Tokenizer,
    /// Bytes each token renders as in output text; empty for control tokens.
    pieces: Vec<Vec<u8>>,
    /// The literal text of each token, as written in the vocabulary.
    texts: Vec<String>,
    special: SpecialMatcher,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    end_of_generation: Vec<u32>,
}

/// Texts of end-of-turn tokens across model families; one of these in the
/// vocabulary as a control token also ends a generation, as in llama.cpp.
const END_OF_GENERATION_TEXTS: &[&str] =
    &["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "</s>"];

impl Tokenizer {
    /// Builds a tokenizer from GGUF tokenizer metadata.
    ///
    /// # Errors
    /// A [`TokenizerError`] when required fields are missing or inconsistent,
    /// or the tokenizer model is not one GreenThread implements.
    pub fn new(spec: TokenizerSpec) -> Result<Self, TokenizerError> {
        let n = spec.tokens.len();
        if n == 0 {
            return Err(TokenizerError::Missing("tokenizer.ggml.tokens"));
        }
        let mut token_types = if spec.token_types.is_empty() {
            vec![TokenType::Normal; n]
        } else if spec.token_types.len() == n {
            spec.token_types.clone()
        } else {
            return Err(TokenizerError::Inconsistent(format!("{} token types for {n} tokens", spec.token_types.len())));
        };
        for (what, id) in [("bos", spec.bos), ("eos", spec.eos), ("eot", spec.eot), ("unknown", spec.unknown)] {
            if let Some(id) = id.filter(|&id| id as usize >= n) {
                return Err(TokenizerError::Inconsistent(format!("{what} token id {id} is outside the vocabulary")));
            }
        }
        let ids = models::vocabulary(&spec);
        mark_end_of_turn_control(&ids, &mut token_types);
        let (model, family) = match spec.model.as_str() {
            "gpt2" => {
                if let Some(b) = (0..=255u8).find(|&b| !ids.contains_key(&byte_level::byte_char(b).to_string())) {
                    return Err(TokenizerError::Inconsistent(format!("no token spells the byte {b:#04x}")));
                }
                (models::byte_level_bpe(&spec, ids.clone())?, Family::ByteLevel)
            }
            "llama" => (models::sentencepiece_bpe(&spec, ids.clone())?, Family::SentencePiece),
            other => return Err(TokenizerError::UnsupportedModel(other.to_owned())),
        };
        let ends = [spec.eos, spec.eot].into_iter().flatten().collect();
        Ok(Self::assemble(Parts {
            model,
            family,
            texts: spec.tokens,
            types: token_types,
            ids: &ids,
            bos: spec.bos,
            eos: spec.eos,
            ends,
            add_bos: spec.add_bos,
        }))
    }

    /// The tokenizer of a vocabulary whose model and token types are settled.
    fn assemble(parts: Parts<'_>) -> Self {
        let Parts { model, family, texts, types, ids, bos, eos, mut ends, add_bos } = parts;
        let pieces = texts
            .iter()
            .zip(&types)
            .map(|(text, &ty)| match family {
                Family::ByteLevel => byte_level_piece(text, ty),
                Family::SentencePiece => sentencepiece_piece(text, ty),
            })
            .collect();
        let special = SpecialMatcher::new(&texts, &types);
        for text in END_OF_GENERATION_TEXTS {
            if let Some(&id) = ids.get(*text)
                && types[id as usize] == TokenType::Control
                && !ends.contains(&id)
            {
                ends.push(id);
            }
        }
        Self { model, pieces, texts, special, bos, eos, add_bos, end_of_generation: ends }
    }

    pub fn vocab_size(&self) -> usize {
        self.texts.len()
    }

    /// Tokenizes `text`. With `parse_special`, control-token markup in the text
    /// (`<|im_start|>`) becomes that token; without, it is tokenized as plain text.
    /// Adds the BOS token where the model asks for it.
    pub fn encode(&self, text: &str, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if self.add_bos
            && let Some(bos) = self.bos
        {
            out.push(bos);
        }
        for fragment in self.special.split(text, parse_special) {
            match fragment {
                special::Fragment::Token(id) => out.push(id),
                special::Fragment::Text(raw) => match self.model.encode_fast(raw, false) {
                    Ok(encoding) => out.extend_from_slice(encoding.get_ids()),
                    // Unreachable with the vocabularies `new` accepts: every
                    // byte has a token (byte-level) or a fallback (`<0xAB>`
                    // or unknown). Logged, never silently wrong ids.
                    Err(e) => tracing::error!(error = %e, "Text could not be tokenized"),
                },
            }
        }
        out
    }

    /// The bytes token `id` contributes to output text (empty for control tokens).
    pub fn piece(&self, id: u32) -> &[u8] {
        self.pieces.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// Decodes ids to text, replacing invalid UTF-8.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| self.piece(id).iter().copied()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Decodes ids to the text they were read from, control tokens written
    /// as their markup (`<|im_start|>`): what `echo` shows of a prompt.
    pub fn decode_with_markup(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            match self.piece(id) {
                [] => bytes.extend_from_slice(self.token_text(id).unwrap_or_default().as_bytes()),
                piece => bytes.extend_from_slice(piece),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The vocabulary's text for token `id`, e.g. `<|im_end|>`.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }

    /// Whether [`Self::encode`] puts BOS in front of every text.
    pub fn adds_bos(&self) -> bool {
        self.add_bos && self.bos.is_some()
    }

    pub fn bos_text(&self) -> &str {
        self.bos.and_then(|id| self.token_text(id)).unwrap_or("")
    }

    pub fn eos_text(&self) -> &str {
        self.eos.and_then(|id| self.token_text(id)).unwrap_or("")
    }

    /// Whether generating `id` ends the model's turn.
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.end_of_generation.contains(&id)
    }
}

/// The `tokenizers` model a GGUF vocabulary describes, without its special
/// tokens: what a Hugging Face `tokenizer.json` of that vocabulary holds.
///
/// # Errors
/// As [`Tokenizer::new`].
pub fn hf_library_tokenizer(spec: &TokenizerSpec) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let ids = models::vocabulary(spec);
    match spec.model.as_str() {
        "gpt2" => models::byte_level_bpe(spec, ids),
        "llama" => models::sentencepiece_bpe(spec, ids),
        other => Err(TokenizerError::UnsupportedModel(other.to_owned())),
    }
}

/// How a vocabulary spells text: the two families the engine reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// GPT-2's bytes-as-characters (Qwen, Llama 3).
    ByteLevel,
    /// `▁` for spaces and `<0xAB>` byte fallbacks (Gemma, Llama 2).
    SentencePiece,
}

/// What [`Tokenizer::assemble`] builds a tokenizer from.
struct Parts<'a> {
    model: tokenizers::Tokenizer,
    family: Family,
    texts: Vec<String>,
    types: Vec<TokenType>,
    ids: &'a ahash::AHashMap<String, u32>,
    bos: Option<u32>,
    eos: Option<u32>,
    /// Ids that end a generation besides the end-of-turn texts.
    ends: Vec<u32>,
    add_bos: bool,
}

/// llama.cpp treats end-of-turn texts as control tokens even where the
/// file marks them normal (Qwen2's `</s>`) or user-defined (Gemma 3's), so
/// they split out of text only with special-token parsing and end a
/// generation; the same here keeps the ids equal.
fn mark_end_of_turn_control(ids: &ahash::AHashMap<String, u32>, types: &mut [TokenType]) {
    for text in END_OF_GENERATION_TEXTS {
        if let Some(&id) = ids.get(*text)
            && matches!(types[id as usize], TokenType::Normal | TokenType::UserDefined)
        {
            tracing::debug!(token = text, id, "End-of-turn token not marked control in the file; treated as control");
            types[id as usize] = TokenType::Control;
        }
    }
}

/// What a byte-level BPE token writes into output text.
fn byte_level_piece(text: &str, ty: TokenType) -> Vec<u8> {
    match ty {
        TokenType::Control | TokenType::Unused => Vec::new(),
        TokenType::UserDefined => text.as_bytes().to_vec(),
        _ => byte_level::text_bytes(text).unwrap_or_else(|| text.as_bytes().to_vec()),
    }
}

/// What a SentencePiece token writes into output text.
fn sentencepiece_piece(text: &str, ty: TokenType) -> Vec<u8> {
    match ty {
        TokenType::Control | TokenType::Unused | TokenType::Unknown => Vec::new(),
        TokenType::UserDefined => text.as_bytes().to_vec(),
        TokenType::Byte => byte_token(text).map_or_else(|| text.as_bytes().to_vec(), |b| vec![b]),
        TokenType::Normal => text.replace(SPACE, " ").into_bytes(),
    }
}

/// The byte a `<0xAB>` token stands for.
fn byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

impl crate::vocabulary::Vocabulary for Tokenizer {
    fn piece(&self, id: u32) -> &[u8] {
        Tokenizer::piece(self, id)
    }

    fn ends_generation(&self, id: u32) -> bool {
        self.is_end_of_generation(id)
    }

    fn end_token(&self) -> Option<u32> {
        self.end_of_generation.first().copied()
    }
}

#[cfg(test)]
mod tests;
