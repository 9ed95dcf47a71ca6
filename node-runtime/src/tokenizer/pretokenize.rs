//! How byte-level BPE tokenizers split text into words before merging,
//! chosen by `tokenizer.ggml.pre` as llama.cpp does. The patterns are
//! llama.cpp's; `tokenizers` runs them (Oniguruma, like the Hugging Face
//! files these vocabularies come from).

use super::TokenizerError;

/// GPT-2's split.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Qwen2's split: single digits, case-insensitive contractions.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3's split: digits in groups of up to three.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The `tokenizer.ggml.pre` values GreenThread knows, for error messages.
pub const KNOWN: &str =
    "default, gpt2, gpt-2, qwen2, qwen35, deepseek-r1-qwen, llama3, llama-bpe, llama-v3, smaug-bpe, falcon3, pixtral";

/// A byte-level BPE vocabulary's word split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreSplit {
    pub pattern: &'static str,
    /// Llama 3 looks a whole word up in the vocabulary before merging.
    pub ignore_merges: bool,
}

impl PreSplit {
    /// The split a `tokenizer.ggml.pre` value names; none given is GPT-2's.
    ///
    /// # Errors
    /// [`TokenizerError::UnsupportedPre`] for a value GreenThread does not
    /// know: splitting it GPT-2's way would give other ids than the model
    /// was trained on (llama.cpp refuses such files too).
    pub fn from_gguf(pre: Option<&str>) -> Result<Self, TokenizerError> {
        let (pattern, ignore_merges) = match pre {
            Some("qwen2" | "qwen35" | "deepseek-r1-qwen") => (QWEN2, false),
            Some("llama3" | "llama-bpe" | "llama-v3" | "smaug-bpe" | "falcon3" | "pixtral") => (LLAMA3, true),
            None | Some("gpt2" | "gpt-2" | "default") => (GPT2, false),
            Some(other) => return Err(TokenizerError::UnsupportedPre(other.to_owned())),
        };
        Ok(Self { pattern, ignore_merges })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_splits_are_chosen_and_unknown_ones_refused_by_name() {
        assert_eq!(PreSplit::from_gguf(Some("qwen2")).unwrap().pattern, QWEN2);
        assert!(PreSplit::from_gguf(Some("llama-bpe")).unwrap().ignore_merges);
        assert_eq!(PreSplit::from_gguf(None).unwrap().pattern, GPT2);
        let err = PreSplit::from_gguf(Some("chatglm-bpe")).unwrap_err();
        assert_eq!(err, TokenizerError::UnsupportedPre("chatglm-bpe".into()));
        assert!(err.to_string().contains("chatglm-bpe") && err.to_string().contains("qwen2"), "{err}");
    }

    fn split(pre: Option<&str>, text: &str) -> Vec<String> {
        use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};
        let mut words = PreTokenizedString::from(text);
        super::super::models::regex_split(PreSplit::from_gguf(pre).unwrap()).unwrap().pre_tokenize(&mut words).unwrap();
        words
            .get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(w, _, _)| w.to_owned())
            .collect()
    }

    #[test]
    fn qwen2_splits_digits_one_by_one_and_keeps_leading_spaces() {
        assert_eq!(split(Some("qwen2"), "Hello world 123!"), ["Hello", " world", " ", "1", "2", "3", "!"]);
        assert_eq!(split(Some("qwen2"), "a  b\n\nc"), ["a", " ", " b", "\n\n", "c"]);
    }

    #[test]
    fn llama3_groups_digits_in_threes() {
        assert_eq!(split(Some("llama-bpe"), "12345"), ["123", "45"]);
    }

    #[test]
    fn split_words_always_concatenate_to_the_input() {
        for pre in [None, Some("qwen2"), Some("llama-bpe")] {
            for text in [" ", "x", "  trailing  ", "é漢字 \t\r\n mix 99 it's", "\u{0}\u{1}"] {
                assert_eq!(split(pre, text).concat(), text, "{pre:?} {text:?}");
            }
        }
    }
}
