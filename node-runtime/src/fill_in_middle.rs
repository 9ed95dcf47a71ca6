//! Fill-in-the-middle prompts for code models trained with FIM markers: the
//! code before the cursor, the code after it, and the model writes what goes
//! between (the completions API's `suffix`). The markers are found in the
//! model's own vocabulary, each one control token, as llama.cpp's `/infill`
//! finds them.

use crate::tokenizer::Tokenizer;

/// One family's markers, in prefix-suffix-middle order.
struct Family {
    prefix: &'static str,
    suffix: &'static str,
    middle: &'static str,
}

/// Qwen2.5-Coder and StarCoder 2, StarCoder and SantaCoder, DeepSeek-Coder.
const FAMILIES: &[Family] = &[
    Family { prefix: "<|fim_prefix|>", suffix: "<|fim_suffix|>", middle: "<|fim_middle|>" },
    Family { prefix: "<fim_prefix>", suffix: "<fim_suffix>", middle: "<fim_middle>" },
    Family { prefix: "<｜fim▁begin｜>", suffix: "<｜fim▁hole｜>", middle: "<｜fim▁end｜>" },
];

/// The markers a tokenizer has as single tokens: prefix, suffix, middle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FimTokens {
    pub prefix: u32,
    pub suffix: u32,
    pub middle: u32,
}

impl FimTokens {
    /// The first family whose three markers are each one token of `tokenizer`.
    pub fn of(tokenizer: &Tokenizer) -> Option<Self> {
        let one = |marker: &str| match tokenizer.encode(marker, true)[..] {
            [id] => Some(id),
            _ => None,
        };
        FAMILIES
            .iter()
            .find_map(|f| Some(Self { prefix: one(f.prefix)?, suffix: one(f.suffix)?, middle: one(f.middle)? }))
    }

    /// The prompt `<prefix>before<suffix>after<middle>`, `before` and `after`
    /// tokenized as plain text (markup in them is not parsed).
    pub fn prompt(&self, tokenizer: &Tokenizer, before: &str, after: &str) -> Vec<u32> {
        let mut prompt = vec![self.prefix];
        prompt.extend(tokenizer.encode(before, false));
        prompt.push(self.suffix);
        prompt.extend(tokenizer.encode(after, false));
        prompt.push(self.middle);
        prompt
    }
}
