//! Turning generated token bytes into text deltas: UTF-8 sequences split
//! across tokens are held until complete, and text that may be the start of
//! a stop sequence is held until it is known not to be one.

/// What pushing a token produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Text safe to send now (possibly empty).
    Text(String),
    /// A stop sequence appeared: send the text before it, then finish.
    Stopped { text: String, stop: String },
}

/// Incremental text of one sequence.
#[derive(Debug, Default)]
pub struct TextStream {
    /// Bytes of an incomplete UTF-8 sequence.
    pending: Vec<u8>,
    /// Decoded text not yet sent because it may begin a stop sequence.
    held: String,
    stops: Vec<String>,
}

impl TextStream {
    pub fn new(stops: Vec<String>) -> Self {
        Self { pending: Vec::new(), held: String::new(), stops: stops.into_iter().filter(|s| !s.is_empty()).collect() }
    }

    /// Adds one token's bytes.
    pub fn push(&mut self, bytes: &[u8]) -> Step {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(s) => s.len(),
            // An invalid byte (not just an unfinished sequence) can never
            // complete: emit it as U+FFFD rather than hold it forever.
            Err(e) if e.error_len().is_some() => {
                let text = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                return self.accept(&text);
            }
            Err(e) => e.valid_up_to(),
        };
        let text: Vec<u8> = self.pending.drain(..valid).collect();
        self.accept(&String::from_utf8_lossy(&text))
    }

    fn accept(&mut self, text: &str) -> Step {
        self.held.push_str(text);
        if let Some((at, stop)) =
            self.stops.iter().filter_map(|s| self.held.find(s.as_str()).map(|at| (at, s))).min_by_key(|(at, _)| *at)
        {
            let stop = stop.clone();
            let text = self.held[..at].to_owned();
            self.held.clear();
            return Step::Stopped { text, stop };
        }
        let keep = self.longest_stop_prefix_suffix();
        let send = self.held.len() - keep;
        let out = self.held[..send].to_owned();
        self.held.drain(..send);
        Step::Text(out)
    }

    /// Length of the longest suffix of the held text that starts some stop sequence.
    fn longest_stop_prefix_suffix(&self) -> usize {
        let held = self.held.as_str();
        (1..=held.len())
            .rev()
            .filter(|&n| held.is_char_boundary(held.len() - n))
            .find(|&n| {
                let suffix = &held[held.len() - n..];
                self.stops.iter().any(|s| s.len() > n && s.starts_with(suffix))
            })
            .unwrap_or(0)
    }

    /// Ends the stream: everything held is sent.
    pub fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.held);
        out.push_str(&String::from_utf8_lossy(&std::mem::take(&mut self.pending)));
        out
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn run(stops: &[&str], pieces: &[&[u8]]) -> (String, Option<String>) {
        let mut s = TextStream::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            match s.push(p) {
                Step::Text(t) => out.push_str(&t),
                Step::Stopped { text, stop } => {
                    out.push_str(&text);
                    return (out, Some(stop));
                }
            }
        }
        out.push_str(&s.finish());
        (out, None)
    }

    #[test]
    fn multibyte_characters_split_across_tokens_are_reassembled() {
        let e = "é".as_bytes();
        assert_eq!(run(&[], &[b"caf", &e[..1], &e[1..]]), ("café".into(), None));
    }

    #[test]
    fn a_stop_sequence_across_tokens_is_found_and_cut() {
        assert_eq!(run(&["END"], &[b"abc E", b"N", b"D more"]), ("abc ".into(), Some("END".into())));
    }

    #[test]
    fn a_false_start_of_a_stop_sequence_is_released() {
        let mut s = TextStream::new(vec!["END".into()]);
        assert_eq!(s.push(b"x E"), Step::Text("x ".into()));
        assert_eq!(s.push(b"N!"), Step::Text("EN!".into()));
    }

    #[test]
    fn the_earliest_stop_sequence_wins() {
        assert_eq!(run(&["b", "a"], &[b"xab"]), ("x".into(), Some("a".into())));
    }

    #[test]
    fn invalid_utf8_becomes_a_replacement_character() {
        assert_eq!(run(&[], &[b"a\xffb"]).0, "a\u{FFFD}b");
    }

    proptest! {
        #[test]
        fn without_a_stop_all_text_comes_out_in_order(
            text in "\\PC{0,40}",
            cuts in proptest::collection::vec(0usize..40, 0..6),
            stop in "[a-z]{1,3}",
        ) {
            let bytes = text.as_bytes();
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            points.push(0);
            points.push(bytes.len());
            points.sort_unstable();
            let pieces: Vec<&[u8]> = points.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
            let (out, stopped) = run(&[&stop], &pieces);
            match stopped {
                None => prop_assert_eq!(out, text),
                Some(s) => {
                    prop_assert_eq!(&s, &stop);
                    let cut = format!("{out}{stop}");
                    prop_assert!(text.starts_with(&cut));
                    prop_assert!(!out.contains(&stop));
                }
            }
        }
    }
}
