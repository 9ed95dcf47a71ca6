//! From espeak-ng's clauses to a Piper voice's input, as Piper builds it:
//! each clause's IPA followed by the punctuation that ended it (a space
//! after a comma, colon or semicolon), sentences split at `.`, `?` and
//! `!`, every code point of the NFD form one phoneme, and the ids framed
//! as `^ _ (phoneme _)* $`.

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;

/// The punctuation that ended a clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminator {
    Period,
    Question,
    Exclamation,
    Comma,
    Colon,
    Semicolon,
    None,
}

impl Terminator {
    /// The terminator of the text espeak-ng read for a clause. espeak-ng
    /// reads one character of the next clause before it stops, so unless
    /// the clause is the text's last, its read text ends with that character.
    pub fn ending(read: &str, last: bool) -> Self {
        let mut read = read;
        if !last && let Some((at, _)) = read.char_indices().next_back() {
            read = &read[..at];
        }
        let end = read.trim_end_matches(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '”' | '’' | ')' | ']'));
        match end.chars().next_back() {
            Some('.' | '…') => Self::Period,
            Some('?') => Self::Question,
            Some('!') => Self::Exclamation,
            Some(',') => Self::Comma,
            Some(':') => Self::Colon,
            Some(';') => Self::Semicolon,
            _ => Self::None,
        }
    }

    /// What Piper appends to the clause's phonemes.
    fn suffix(self) -> &'static str {
        match self {
            Self::Period => ".",
            Self::Question => "?",
            Self::Exclamation => "!",
            Self::Comma => ", ",
            Self::Colon => ": ",
            Self::Semicolon => "; ",
            Self::None => "",
        }
    }

    fn ends_sentence(self) -> bool {
        matches!(self, Self::Period | Self::Question | Self::Exclamation)
    }
}

/// One clause as espeak-ng phonemized it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// IPA, words separated by spaces.
    pub phonemes: String,
    pub terminator: Terminator,
}

/// The phonemes of each sentence, one code point each.
pub fn sentences(clauses: &[Clause]) -> Vec<Vec<char>> {
    let mut sentences = Vec::new();
    let mut sentence: Vec<char> = Vec::new();
    for clause in clauses {
        let text = format!("{}{}", without_language_flags(&clause.phonemes), clause.terminator.suffix());
        sentence.extend(text.nfd());
        if clause.terminator.ends_sentence() && !sentence.is_empty() {
            sentences.push(std::mem::take(&mut sentence));
        }
    }
    if sentence.iter().any(|c| !c.is_whitespace()) {
        sentences.push(sentence);
    }
    sentences
}

/// espeak-ng marks words of another language as `(fr)...(en)`; the voice knows no such marks.
fn without_language_flags(phonemes: &str) -> String {
    let mut out = String::with_capacity(phonemes.len());
    let mut depth = 0usize;
    for c in phonemes.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// A voice's phoneme ids (Piper's `phoneme_id_map`).
#[derive(Debug, Clone)]
pub struct PhonemeIds {
    map: HashMap<char, Vec<i64>>,
    pad: Vec<i64>,
    bos: Vec<i64>,
    eos: Vec<i64>,
}

impl PhonemeIds {
    /// Reads the map: each phoneme (one code point) to its ids.
    ///
    /// # Errors
    /// When the map is not one, or lacks the pad `_`, start `^` or end `$`.
    pub fn from_json(map: &serde_json::Value) -> Result<Self, String> {
        let object = map.as_object().ok_or("phoneme_id_map is not an object")?;
        let mut ids = HashMap::new();
        for (phoneme, value) in object {
            let mut chars = phoneme.chars();
            let (Some(c), None) = (chars.next(), chars.next()) else { continue };
            let list = value
                .as_array()
                .and_then(|a| a.iter().map(serde_json::Value::as_i64).collect::<Option<Vec<_>>>())
                .ok_or_else(|| format!("phoneme_id_map[{phoneme:?}] is not a list of ids"))?;
            ids.insert(c, list);
        }
        let take = |c: char| ids.get(&c).cloned().ok_or_else(|| format!("phoneme_id_map has no {c:?}"));
        Ok(Self { pad: take('_')?, bos: take('^')?, eos: take('$')?, map: ids })
    }

    /// The ids of one sentence; phonemes the voice does not know are skipped, as Piper skips them.
    pub fn encode(&self, phonemes: &[char]) -> Vec<i64> {
        let mut ids = self.bos.clone();
        ids.extend(&self.pad);
        for phoneme in phonemes {
            if let Some(id) = self.map.get(phoneme) {
                ids.extend(id);
                ids.extend(&self.pad);
            }
        }
        ids.extend(&self.eos);
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn clause(phonemes: &str, terminator: Terminator) -> Clause {
        Clause { phonemes: phonemes.into(), terminator }
    }

    #[test]
    fn the_terminator_is_read_before_the_character_espeak_read_ahead() {
        assert_eq!(Terminator::ending("Hello there, h", false), Terminator::Comma);
        assert_eq!(Terminator::ending("ow are you? I", false), Terminator::Question);
        assert_eq!(Terminator::ending(" am fine.  T", false), Terminator::Period);
        assert_eq!(Terminator::ending("mith said \"hi.\"", true), Terminator::Period);
        assert_eq!(Terminator::ending("it left!", true), Terminator::Exclamation);
        assert_eq!(Terminator::ending("no punctuation", true), Terminator::None);
        assert_eq!(Terminator::ending("then: é", false), Terminator::Colon);
    }

    #[test]
    fn clauses_join_into_sentences_with_their_punctuation() {
        let clauses = [
            clause("həlˈoʊ ðˈɛɹ", Terminator::Comma),
            clause("hˈaʊ ɑːɹ juː", Terminator::Question),
            clause("aɪɐm (fr)bjɛ̃(en) fˈaɪn", Terminator::None),
        ];
        let sentences: Vec<String> = sentences(&clauses).into_iter().map(|s| s.into_iter().collect()).collect();
        let first: String = "həlˈoʊ ðˈɛɹ, hˈaʊ ɑːɹ juː?".nfd().collect();
        // Only the flags go, as in Piper: the words they mark stay.
        assert_eq!(sentences, [first, "aɪɐm bjɛ̃ fˈaɪn".nfd().collect()]);
    }

    fn ids() -> PhonemeIds {
        PhonemeIds::from_json(&serde_json::json!({"_": [0], "^": [1], "$": [2], " ": [3], "a": [14], "b": [15]}))
            .unwrap()
    }

    #[test]
    fn ids_are_framed_and_padded() {
        assert_eq!(ids().encode(&['a', ' ', 'b', 'q']), [1, 0, 14, 0, 3, 0, 15, 0, 2]);
        assert!(PhonemeIds::from_json(&serde_json::json!({"a": [1]})).is_err());
    }

    proptest! {
        #[test]
        fn every_known_phoneme_becomes_its_id_then_the_pad(phonemes in proptest::collection::vec(prop_oneof![Just('a'), Just('b'), Just(' '), Just('z')], 0..40)) {
            let encoded = ids().encode(&phonemes);
            let known = phonemes.iter().filter(|c| **c != 'z').count();
            prop_assert_eq!(encoded.len(), 3 + 2 * known);
            prop_assert_eq!(&encoded[..2], &[1, 0]);
            prop_assert_eq!(encoded.last(), Some(&2));
            // The pad follows the start and every phoneme: every other id from the second.
            prop_assert!(encoded[..encoded.len() - 1].iter().skip(1).step_by(2).all(|id| *id == 0));
        }
    }
}
