//! Splitting text around special tokens before the tokenizer model runs,
//! in llama.cpp's order: longest special token first.

use aho_corasick::AhoCorasick;

use super::TokenType;

/// A piece of input: raw text for the tokenizer model, or a special token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

struct Special {
    text: String,
    id: u32,
    /// Control and unknown tokens are matched only when special tokens are parsed.
    control: bool,
}

/// Finds special-token markup in text.
pub struct SpecialMatcher {
    /// Longest text first, then lowest id: the order tokens are split out in.
    specials: Vec<Special>,
    /// Finds which specials occur at all, so a long prompt is not scanned once per special token.
    automaton: Option<AhoCorasick>,
}

impl SpecialMatcher {
    pub fn new(tokens: &[String], types: &[TokenType]) -> Self {
        let mut specials: Vec<Special> = tokens
            .iter()
            .zip(types)
            .enumerate()
            .filter(|(_, (text, ty))| {
                !text.is_empty() && matches!(ty, TokenType::Control | TokenType::UserDefined | TokenType::Unknown)
            })
            .map(|(id, (text, ty))| Special {
                text: text.clone(),
                id: id as u32,
                control: *ty != TokenType::UserDefined,
            })
            .collect();
        specials.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.id.cmp(&b.id)));
        let automaton = AhoCorasick::new(specials.iter().map(|s| s.text.as_str())).ok();
        Self { specials, automaton }
    }

    /// Splits `text` into raw text and special tokens.
    pub fn split<'t>(&self, text: &'t str, parse_special: bool) -> Vec<Fragment<'t>> {
        let mut present: Vec<usize> = match &self.automaton {
            Some(ac) => ac.find_overlapping_iter(text).map(|m| m.pattern().as_usize()).collect(),
            None => Vec::new(),
        };
        present.sort_unstable();
        present.dedup();
        let mut fragments = vec![Fragment::Text(text)];
        for special in present.iter().map(|&i| &self.specials[i]) {
            if special.control && !parse_special {
                continue;
            }
            fragments = fragments
                .into_iter()
                .flat_map(|fragment| match fragment {
                    Fragment::Text(raw) => split_on(raw, &special.text, special.id),
                    token => vec![token],
                })
                .collect();
        }
        fragments.retain(|f| !matches!(f, Fragment::Text("")));
        fragments
    }
}

fn split_on<'t>(raw: &'t str, needle: &str, id: u32) -> Vec<Fragment<'t>> {
    let mut out = Vec::new();
    let mut last = 0;
    for (at, _) in raw.match_indices(needle) {
        out.push(Fragment::Text(&raw[last..at]));
        out.push(Fragment::Token(id));
        last = at + needle.len();
    }
    out.push(Fragment::Text(&raw[last..]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher() -> SpecialMatcher {
        let tokens: Vec<String> =
            ["a", "<|im_start|>", "<|im_end|>", "<tool_call>", "<|im"].iter().map(|s| s.to_string()).collect();
        let types =
            [TokenType::Normal, TokenType::Control, TokenType::Control, TokenType::UserDefined, TokenType::Control];
        SpecialMatcher::new(&tokens, &types)
    }

    #[test]
    fn control_tokens_are_split_out_only_when_parsing_special_tokens() {
        let m = matcher();
        assert_eq!(
            m.split("<|im_start|>user\nhi<|im_end|>", true),
            [Fragment::Token(1), Fragment::Text("user\nhi"), Fragment::Token(2)]
        );
        assert_eq!(m.split("<|im_start|>user", false), [Fragment::Text("<|im_start|>user")]);
    }

    #[test]
    fn user_defined_tokens_are_always_split_out() {
        assert_eq!(
            matcher().split("x<tool_call>y", false),
            [Fragment::Text("x"), Fragment::Token(3), Fragment::Text("y")]
        );
    }

    #[test]
    fn longer_special_tokens_win_over_their_prefixes() {
        assert_eq!(matcher().split("<|im_end|><|im", true), [Fragment::Token(2), Fragment::Token(4)]);
    }
}
