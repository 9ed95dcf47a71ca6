//! How byte-level BPE tokenizers split text into words before merging,
//! chosen by `tokenizer.ggml.pre` as llama.cpp does.

use fancy_regex::Regex;

/// GPT-2's split, llama.cpp's fallback for unknown `pre` values.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Qwen2's split: single digits, case-insensitive contractions.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3's split: digits in groups of up to three.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A compiled pre-tokenizer.
pub struct PreTokenizer {
    regex: Regex,
    /// Llama 3 looks a whole word up in the vocabulary before merging.
    pub(crate) ignore_merges: bool,
}

impl PreTokenizer {
    /// The pre-tokenizer for a `tokenizer.ggml.pre` value; unknown values fall
    /// back to GPT-2's split with a warning, as llama.cpp does.
    pub fn from_gguf(pre: Option<&str>) -> Self {
        let (pattern, ignore_merges) = match pre {
            Some("qwen2" | "qwen35" | "deepseek-r1-qwen") => (QWEN2, false),
            Some("llama3" | "llama-bpe" | "llama-v3" | "smaug-bpe" | "falcon3" | "pixtral") => (LLAMA3, true),
            None | Some("gpt2" | "gpt-2" | "default") => (GPT2, false),
            Some(other) => {
                tracing::warn!(pre = other, "Unknown tokenizer pre-split; using GPT-2's");
                (GPT2, false)
            }
        };
        Self::with_pattern(pattern, ignore_merges)
    }

    fn with_pattern(pattern: &str, ignore_merges: bool) -> Self {
        // The patterns are constants of this module; a failure is a bug caught by its tests.
        #[allow(clippy::expect_used)]
        let regex = Regex::new(pattern).expect("built-in pre-tokenizer pattern compiles");
        Self { regex, ignore_merges }
    }

    /// Splits `text` into words. Text the pattern does not match (rare) is
    /// kept as words of its own, so nothing is ever dropped.
    pub fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut words = Vec::new();
        let mut last = 0;
        for m in self.regex.find_iter(text) {
            let Ok(m) = m else {
                // Backtracking limit hit on pathological input: keep the rest whole.
                break;
            };
            if m.start() > last {
                words.push(&text[last..m.start()]);
            }
            if m.end() > m.start() {
                words.push(m.as_str());
            }
            last = m.end();
        }
        if last < text.len() {
            words.push(&text[last..]);
        }
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen2_splits_digits_one_by_one_and_keeps_leading_spaces() {
        let pre = PreTokenizer::from_gguf(Some("qwen2"));
        assert_eq!(pre.split("Hello world 123!"), ["Hello", " world", " ", "1", "2", "3", "!"]);
        assert_eq!(pre.split("a  b\n\nc"), ["a", " ", " b", "\n\n", "c"]);
    }

    #[test]
    fn llama3_groups_digits_in_threes() {
        let pre = PreTokenizer::from_gguf(Some("llama-bpe"));
        assert_eq!(pre.split("12345"), ["123", "45"]);
    }

    #[test]
    fn split_words_always_concatenate_to_the_input() {
        for pre in [None, Some("qwen2"), Some("llama-bpe"), Some("unknown-pre")] {
            let p = PreTokenizer::from_gguf(pre);
            for text in ["", " ", "x", "  trailing  ", "é漢字 \t\r\n mix 99 it's", "\u{0}\u{1}"] {
                assert_eq!(p.split(text).concat(), text, "{pre:?} {text:?}");
            }
        }
    }
}
