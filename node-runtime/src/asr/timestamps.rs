//! Whisper's timestamp rules, as pure functions over the next token's
//! logits and the tokens sampled so far in a 30-second window; and the
//! segments those tokens describe.
//!
//! A window's output is `<|t0|> text <|t1|> <|t1|> text <|t2|> … <|eot|>`:
//! every segment opens and closes with a timestamp (0.02 s steps), and
//! timestamps never go back.

/// The token ids the rules need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Specials {
    pub eot: u32,
    pub no_timestamps: u32,
    /// `<|0.00|>`; later timestamps follow it.
    pub timestamp_begin: u32,
}

/// Seconds per timestamp step.
pub const SECONDS_PER_STEP: f64 = 0.02;
/// The first timestamp of a window may be at most this many steps in (1 s).
const MAX_INITIAL_STEPS: u32 = 50;

impl Specials {
    fn is_timestamp(&self, token: u32) -> bool {
        token >= self.timestamp_begin
    }
}

/// Sets to −∞ the logits of tokens the rules forbid after `sampled`.
pub fn constrain(logits: &mut [f32], sampled: &[u32], s: &Specials) {
    let begin = s.timestamp_begin as usize;
    let forbid = |logits: &mut [f32], range: std::ops::Range<usize>| {
        let end = range.end.min(logits.len());
        logits[range.start.min(end)..end].fill(f32::NEG_INFINITY);
    };
    // Of the special tokens, only the end and the timestamps are output.
    forbid(logits, s.eot as usize + 1..begin);
    let Some(&last) = sampled.last() else {
        // A window starts with a timestamp, and not late.
        forbid(logits, 0..begin);
        forbid(logits, begin + MAX_INITIAL_STEPS as usize + 1..logits.len());
        return;
    };
    let last_is_time = s.is_timestamp(last);
    let before_is_time = sampled.len() < 2 || s.is_timestamp(sampled[sampled.len() - 2]);
    if last_is_time {
        if before_is_time {
            // A segment just opened: text (or the end) comes next.
            forbid(logits, begin..logits.len());
        } else {
            // A segment's text ran: it closes (or the window ends).
            forbid(logits, 0..s.eot as usize);
        }
    }
    if let Some(&latest) = sampled.iter().rev().find(|t| s.is_timestamp(**t)) {
        // Never back in time; a segment that closes is at least a step long.
        let closing = last_is_time && !before_is_time;
        let floor = if closing { latest } else { latest + 1 };
        forbid(logits, begin..floor as usize);
    }
    // When a timestamp is likelier than any single text token, take one.
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max.is_finite() && begin < logits.len() {
        let total: f32 = logits.iter().map(|l| (l - max).exp()).sum();
        let times: f32 = logits[begin..].iter().map(|l| (l - max).exp()).sum();
        let best_text = logits[..begin].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if times > 0.0 && (times / total).ln() > best_text - max - total.ln() {
            forbid(logits, 0..begin);
        }
    }
}

/// A stretch of speech: its bounds in seconds from the window's start, and its text tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub start: f64,
    pub end: f64,
    pub tokens: Vec<u32>,
}

/// The complete segments of a window's tokens, and where the next window
/// starts (seconds from this one's start): after the last complete
/// segment when speech was cut off by the window's end, else the window's
/// whole length.
pub fn segments(tokens: &[u32], s: &Specials, window_seconds: f64) -> (Vec<Span>, f64) {
    let mut spans = Vec::new();
    let mut start: Option<f64> = None;
    let mut text = Vec::new();
    for &t in tokens {
        if t == s.eot {
            break;
        }
        if s.is_timestamp(t) {
            let at = f64::from(t - s.timestamp_begin) * SECONDS_PER_STEP;
            match start {
                Some(opened) if !text.is_empty() => {
                    spans.push(Span { start: opened, end: at, tokens: std::mem::take(&mut text) });
                    start = None;
                }
                _ => start = Some(at),
            }
        } else if t < s.eot {
            text.push(t);
        }
    }
    let cut_off = start.is_some() && !text.is_empty();
    match (cut_off, spans.last()) {
        // Speech runs past the window: the next one starts where the last segment ended.
        (true, Some(last)) if last.end > 0.0 => {
            let resume = last.end;
            (spans, resume)
        }
        (true, _) => {
            let opened = start.unwrap_or(0.0);
            if opened < window_seconds {
                spans.push(Span { start: opened, end: window_seconds, tokens: text });
            }
            (spans, window_seconds)
        }
        (false, _) => (spans, window_seconds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Specials = Specials { eot: 10, no_timestamps: 12, timestamp_begin: 13 };
    const VOCAB: usize = 13 + 1501;

    fn ts(step: u32) -> u32 {
        S.timestamp_begin + step
    }

    fn allowed(sampled: &[u32]) -> Vec<bool> {
        let mut logits = vec![0f32; VOCAB];
        constrain(&mut logits, sampled, &S);
        logits.iter().map(|l| l.is_finite()).collect()
    }

    #[test]
    fn a_window_opens_with_an_early_timestamp() {
        let ok = allowed(&[]);
        assert!(!ok[..S.timestamp_begin as usize].iter().any(|a| *a), "no text before the first timestamp");
        assert!(ok[ts(0) as usize] && ok[ts(50) as usize] && !ok[ts(51) as usize]);
    }

    #[test]
    fn after_an_opening_timestamp_comes_text_and_after_text_a_later_timestamp() {
        let ok = allowed(&[ts(5)]);
        assert!(ok[3] && ok[S.eot as usize] && !ok[ts(7) as usize], "text after an opening timestamp");
        let ok = allowed(&[ts(5), 3, 4]);
        assert!(!ok[ts(5) as usize] && ok[ts(6) as usize], "a segment is at least a step long");
        let mut logits = vec![0f32; VOCAB];
        logits[3] = 20.0;
        constrain(&mut logits, &[ts(5), 3, 4], &S);
        assert!(logits[3].is_finite(), "more text, when it is likelier than all timestamps together");
        let ok = allowed(&[ts(5), 3, ts(9)]);
        assert!(!ok[3], "a closed segment is followed by a timestamp or the end");
        assert!(ok[ts(9) as usize] && !ok[ts(8) as usize], "the next may open where the last closed, not before");
        let mut logits = vec![0f32; VOCAB];
        logits[S.eot as usize] = 20.0;
        constrain(&mut logits, &[ts(5), 3, ts(9)], &S);
        assert!(logits[S.eot as usize].is_finite(), "the end, when it is likelier than all timestamps together");
    }

    #[test]
    fn a_likely_timestamp_wins_over_every_text_token() {
        let mut logits = vec![0f32; VOCAB];
        // Each timestamp alone is unlikelier than text token 3, but all of them together are likelier.
        logits[3] = 2.0;
        constrain(&mut logits, &[ts(0), 3], &S);
        assert!(logits[3].is_infinite(), "the timestamps' total probability beats the best text token");
    }

    #[test]
    fn segments_pair_their_timestamps() {
        let tokens = [ts(0), 3, 4, ts(100), ts(100), 5, ts(150), S.eot];
        let (spans, next) = segments(&tokens, &S, 30.0);
        assert_eq!(
            spans,
            [Span { start: 0.0, end: 2.0, tokens: vec![3, 4] }, Span { start: 2.0, end: 3.0, tokens: vec![5] }]
        );
        assert_eq!(next, 30.0, "every segment closed: the window is done");
    }

    #[test]
    fn speech_cut_off_at_the_window_resumes_after_the_last_whole_segment() {
        let tokens = [ts(0), 3, ts(600), ts(600), 4, 5, S.eot];
        let (spans, next) = segments(&tokens, &S, 30.0);
        assert_eq!(spans.len(), 1);
        assert!((next - 12.0).abs() < 1e-9, "{next}");
        // With no whole segment, the cut-off text is kept to the window's end.
        let (spans, next) = segments(&[ts(10), 4, 5], &S, 30.0);
        assert_eq!(spans, [Span { start: 0.2, end: 30.0, tokens: vec![4, 5] }]);
        assert_eq!(next, 30.0);
    }

    proptest! {
        /// Whatever the logits, sampling greedily under the rules gives
        /// timestamps that never go back and segments that do not overlap.
        #[test]
        fn greedy_decoding_under_the_rules_keeps_time_in_order(seed in prop::collection::vec(-5f32..5.0, VOCAB)) {
            let mut sampled = Vec::new();
            for step in 0..40 {
                let mut logits: Vec<f32> = seed.iter().enumerate().map(|(i, l)| l + ((i * 31 + step * 17) % 7) as f32).collect();
                constrain(&mut logits, &sampled, &S);
                let next = (0..VOCAB).max_by(|a, b| logits[*a].total_cmp(&logits[*b])).unwrap() as u32;
                prop_assert!(logits[next as usize].is_finite());
                if next == S.eot { break; }
                sampled.push(next);
            }
            let times: Vec<u32> = sampled.iter().copied().filter(|t| *t >= S.timestamp_begin).collect();
            prop_assert!(times.windows(2).all(|w| w[0] <= w[1]), "{:?}", sampled);
            let (spans, _) = segments(&sampled, &S, 30.0);
            prop_assert!(spans.iter().all(|s| s.start < s.end));
            prop_assert!(spans.windows(2).all(|w| w[0].end <= w[1].start));
        }
    }
}
