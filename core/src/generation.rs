//! What a generation is limited by, why it ended, and what it cost.

use serde::Serialize;

/// Limits of one generation, already validated against the model's context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationLimits {
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Strings that end the generation; none of them appears in the output.
    pub stop: Vec<String>,
}

/// Why a generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced an end-of-turn token.
    EndOfTurn,
    /// One of the request's stop sequences appeared; it is cut from the output.
    StopSequence(String),
    /// `max_tokens` was reached.
    MaxTokens,
    /// The model's context window is full.
    ContextFull,
    /// The output's grammar allowed no further token (or the search for one
    /// ran out of time) before the output was complete: it is cut short.
    GrammarExhausted,
}

impl FinishReason {
    /// The OpenAI `finish_reason` value.
    pub fn openai(&self) -> &'static str {
        match self {
            Self::EndOfTurn | Self::StopSequence(_) => "stop",
            Self::MaxTokens | Self::ContextFull | Self::GrammarExhausted => "length",
        }
    }
}

/// Token counts of one request, counted by the model's own tokenizer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl Usage {
    pub fn total_tokens(&self) -> u32 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// A generated token's log-probability and its most likely alternatives'.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: TokenText,
    pub logprob: f32,
    /// Most likely first.
    pub top: Vec<(TokenText, f32)>,
}

/// A token as written: its bytes (part of a character, for some tokens) and
/// their text, invalid UTF-8 replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenText {
    pub text: String,
    pub bytes: Vec<u8>,
}

impl TokenText {
    pub fn new(bytes: &[u8]) -> Self {
        Self { text: String::from_utf8_lossy(bytes).into_owned(), bytes: bytes.to_vec() }
    }
}
