//! Turning logits into the next token: penalties, an output grammar,
//! temperature, top-k, top-p and min-p, drawn from the request's own seeded
//! random stream.

use std::collections::HashMap;

use greenthread_core::SamplingParams;
use rand::rngs::StdRng;

use crate::constraint::Constraint;
use crate::vocabulary::Vocabulary;
use rand::{Rng, SeedableRng};

/// When top-p is active, look for the nucleus among this many most likely
/// tokens before sorting the whole vocabulary (150k+ entries).
const NUCLEUS_CANDIDATES: usize = 512;

/// The sampling state of one sequence.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// How often each generated token occurred (presence/frequency penalties).
    generated: HashMap<u32, u32>,
    /// Prompt and generated tokens (repetition penalty).
    seen: Vec<u32>,
    /// Where the output stands in its grammar, when it has one.
    constraint: Option<Constraint>,
    /// The grammar allowed no token (or could go no further), so the output
    /// ended before the grammar was complete.
    cut_short: bool,
    /// How many alternatives to report with each token's log-probability, if asked.
    logprobs: Option<usize>,
    /// The log-probabilities of the token drawn last, until taken.
    drawn: Option<TokenLogprobs>,
}

/// A drawn token's log-probability and the most likely tokens with theirs,
/// from the model's own distribution (before penalties, grammar and
/// temperature, as vLLM reports them by default).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    pub token: u32,
    pub logprob: f32,
    /// Most likely first.
    pub top: Vec<(u32, f32)>,
}

/// The log-probabilities of `token` and of the `top` most likely tokens
/// under the softmax of `logits`.
pub fn log_probabilities(logits: &[f32], token: u32, top: usize) -> TokenLogprobs {
    let max = logits.iter().copied().filter(|l| l.is_finite()).fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().filter(|l| l.is_finite()).map(|&l| f64::from(l - max).exp()).sum();
    let log_normalizer = max + sum.ln() as f32;
    let logprob_of = |l: f32| if l.is_finite() { l - log_normalizer } else { f32::NEG_INFINITY };
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (id, &l) in logits.iter().enumerate() {
            if !l.is_finite() || (best.len() == top && best.last().is_some_and(|&(_, worst)| l <= worst)) {
                continue;
            }
            let at = best.partition_point(|&(_, b)| b >= l);
            best.insert(at, (id as u32, l));
            best.truncate(top);
        }
    }
    TokenLogprobs {
        token,
        logprob: logits.get(token as usize).copied().map_or(f32::NEG_INFINITY, logprob_of),
        top: best.into_iter().map(|(id, l)| (id, logprob_of(l))).collect(),
    }
}

impl Sampler {
    pub fn new(params: SamplingParams, prompt: &[u32]) -> Self {
        let rng = match params.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let seen = if params.repetition_penalty == 1.0 { Vec::new() } else { prompt.to_vec() };
        Self {
            params,
            rng,
            generated: HashMap::new(),
            seen,
            constraint: None,
            cut_short: false,
            logprobs: None,
            drawn: None,
        }
    }

    /// Reports each drawn token's log-probability with `top` alternatives.
    #[must_use]
    pub fn with_logprobs(mut self, top: Option<usize>) -> Self {
        self.logprobs = top;
        self
    }

    /// The log-probabilities of the token drawn last, when they were asked for.
    pub fn take_logprobs(&mut self) -> Option<TokenLogprobs> {
        self.drawn.take()
    }

    /// Constrains the output to a grammar.
    #[must_use]
    pub fn with_constraint(mut self, constraint: Option<Constraint>) -> Self {
        self.constraint = constraint;
        self
    }

    /// Whether the output must match a grammar: each token then needs its
    /// mask computed, which runs off the model's worker.
    pub fn is_constrained(&self) -> bool {
        self.constraint.is_some()
    }

    /// Whether the output ended because its grammar could not go on: the
    /// answer is incomplete, as if a length limit had cut it.
    pub fn cut_short(&self) -> bool {
        self.cut_short
    }

    /// Picks the next token from `logits` (modified in place) and records it.
    pub fn sample(&mut self, logits: &mut [f32], vocab: &dyn Vocabulary) -> u32 {
        let raw = self.logprobs.map(|top| (top, logits.to_vec()));
        let token = self.choose(logits, vocab);
        self.drawn = raw.map(|(top, raw)| log_probabilities(&raw, token, top));
        token
    }

    fn choose(&mut self, logits: &mut [f32], vocab: &dyn Vocabulary) -> u32 {
        self.apply_penalties(logits);
        if let Some(constraint) = &mut self.constraint
            && let Some(end) = mask_to_grammar(constraint, logits, vocab)
        {
            // Nothing the grammar allows is left: the output ends here, cut short.
            self.cut_short = true;
            return end;
        }
        let token = if self.params.is_greedy() { argmax(logits) } else { self.draw(logits) };
        if let Some(constraint) = &mut self.constraint
            && !vocab.ends_generation(token)
        {
            // A token the grammar refuses leaves it in error: the next mask
            // fails, and the output ends there, cut short.
            let _ = constraint.advance(token);
        }
        *self.generated.entry(token).or_default() += 1;
        if self.params.repetition_penalty != 1.0 {
            self.seen.push(token);
        }
        token
    }

    fn apply_penalties(&self, logits: &mut [f32]) {
        let p = &self.params;
        for &(token, bias) in &p.logit_bias {
            // Ids are checked against the vocabulary when the request arrives.
            if let Some(l) = logits.get_mut(token as usize) {
                *l += bias;
            }
        }
        if p.repetition_penalty != 1.0 {
            for &t in &self.seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 { *l / p.repetition_penalty } else { *l * p.repetition_penalty };
                }
            }
        }
        if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
            for (&t, &count) in &self.generated {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l -= p.presence_penalty + p.frequency_penalty * count as f32;
                }
            }
        }
    }

    fn draw(&mut self, logits: &[f32]) -> u32 {
        let p = &self.params;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        // Probabilities up to a constant factor, as (token, weight).
        let mut cands: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, &l)| (i as u32, ((l - max) / p.temperature).exp()))
            .filter(|(_, w)| *w > 0.0)
            .collect();
        if cands.is_empty() {
            return argmax(logits);
        }
        let by_weight = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if let Some(k) = p.top_k.map(|k| k as usize).filter(|&k| k < cands.len()) {
            cands.select_nth_unstable_by(k.max(1) - 1, by_weight);
            cands.truncate(k.max(1));
        }
        if p.top_p < 1.0 {
            let total: f32 = cands.iter().map(|c| c.1).sum();
            // Sort only the head when it already holds the nucleus.
            if cands.len() > NUCLEUS_CANDIDATES {
                cands.select_nth_unstable_by(NUCLEUS_CANDIDATES - 1, by_weight);
                let head: f32 = cands[..NUCLEUS_CANDIDATES].iter().map(|c| c.1).sum();
                if head >= p.top_p * total {
                    cands.truncate(NUCLEUS_CANDIDATES);
                }
            }
            cands.sort_unstable_by(by_weight);
            let mut cum = 0.0;
            let mut keep = cands.len();
            for (i, c) in cands.iter().enumerate() {
                cum += c.1;
                if cum >= p.top_p * total {
                    keep = i + 1;
                    break;
                }
            }
            cands.truncate(keep.max(1));
        }
        if p.min_p > 0.0 {
            let top = cands.iter().map(|c| c.1).fold(0.0, f32::max);
            cands.retain(|c| c.1 >= p.min_p * top);
        }
        let total: f32 = cands.iter().map(|c| c.1).sum();
        let mut r = self.rng.random::<f32>() * total;
        for &(token, w) in &cands {
            if r < w {
                return token;
            }
            r -= w;
        }
        cands.last().map_or(0, |c| c.0)
    }
}

/// Leaves finite only the logits of tokens the grammar allows next: the
/// mask covers the whole vocabulary; an end-of-generation token is allowed
/// where the grammar may end. Returns an end token when nothing at all is
/// allowed (or the grammar can go no further).
fn mask_to_grammar(constraint: &mut Constraint, logits: &mut [f32], vocab: &dyn Vocabulary) -> Option<u32> {
    let Ok(mask) = constraint.allowed() else { return Some(vocab.end_token().unwrap_or(0)) };
    let may_end = mask.is_allowed(constraint.end_token());
    let known = mask.len();
    let mut any = false;
    for (id, logit) in logits.iter_mut().enumerate() {
        let token = id as u32;
        let allowed = if vocab.ends_generation(token) { may_end } else { id < known && mask.is_allowed(token) };
        if !allowed {
            *logit = f32::NEG_INFINITY;
        } else if logit.is_finite() {
            any = true;
        }
    }
    if any {
        return None;
    }
    // Allowed tokens may all have been banned (logit_bias) or never scored.
    let end = vocab.end_token().unwrap_or(0);
    if may_end {
        logits.fill(f32::NEG_INFINITY);
        if let Some(l) = logits.get_mut(end as usize) {
            *l = 0.0;
        }
        return None;
    }
    Some(end)
}

/// Index of the largest logit; the lowest index among ties.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use greenthread_core::grammar::OutputGrammar;

    use super::*;
    use crate::constraint::Grammars;

    /// Token `i` writes the `i`-th of these; the last one ends the generation.
    struct Letters(&'static [&'static str]);

    impl Vocabulary for Letters {
        fn piece(&self, id: u32) -> &[u8] {
            self.0[id as usize].as_bytes()
        }
        fn ends_generation(&self, id: u32) -> bool {
            id as usize == self.0.len() - 1
        }
        fn end_token(&self) -> Option<u32> {
            Some(self.0.len() as u32 - 1)
        }
    }

    const PLAIN: Letters = Letters(&["a", "b", "c", "d", "e", "f", "<end>"]);

    fn params(f: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
        let mut p = SamplingParams { seed: Some(7), ..SamplingParams::default() };
        f(&mut p);
        p
    }

    #[test]
    fn logprobs_are_reported_for_the_drawn_token_when_asked() {
        let mut s = Sampler::new(SamplingParams::greedy(), &[]).with_logprobs(Some(2));
        let token = s.sample(&mut [0.0, 2.0f32.ln(), f32::NEG_INFINITY], &PLAIN);
        let lp = s.take_logprobs().unwrap();
        assert_eq!((lp.token, token), (1, 1));
        assert!((lp.logprob - (2.0f32 / 3.0).ln()).abs() < 1e-6);
        assert_eq!(lp.top.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 0]);
        assert!(s.take_logprobs().is_none(), "taken once");
        let mut plain = Sampler::new(SamplingParams::greedy(), &[]);
        plain.sample(&mut [0.0, 1.0], &PLAIN);
        assert!(plain.take_logprobs().is_none(), "not asked for");
    }

    #[test]
    fn greedy_picks_the_largest_logit_and_the_first_among_ties() {
        let mut s = Sampler::new(SamplingParams::greedy(), &[]);
        assert_eq!(s.sample(&mut [0.1, 3.0, -1.0, 3.0], &PLAIN), 1);
    }

    #[test]
    fn the_same_seed_draws_the_same_tokens() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let draw = || {
            let mut s = Sampler::new(params(|_| {}), &[]);
            (0..20).map(|_| s.sample(&mut logits.clone(), &PLAIN)).collect::<Vec<_>>()
        };
        assert_eq!(draw(), draw());
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::new(params(|p| p.top_k = Some(1)), &[]);
        for _ in 0..20 {
            assert_eq!(s.sample(&mut [0.0, 1.0, 0.9, 0.5], &PLAIN), 1);
        }
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // Token 0 holds ~88% of the mass; top_p 0.5 leaves only it.
        let mut s = Sampler::new(params(|p| p.top_p = 0.5), &[]);
        for _ in 0..50 {
            assert_eq!(s.sample(&mut [5.0, 3.0, 1.0, 0.0], &PLAIN), 0);
        }
    }

    #[test]
    fn frequency_penalty_steers_away_from_repeats() {
        let mut s = Sampler::new(SamplingParams { frequency_penalty: 2.0, ..SamplingParams::greedy() }, &[]);
        let first = s.sample(&mut [1.0, 0.5], &PLAIN);
        let second = s.sample(&mut [1.0, 0.5], &PLAIN);
        assert_eq!((first, second), (0, 1));
    }

    #[test]
    fn logit_bias_bans_and_promotes_tokens() {
        let mut banned =
            Sampler::new(SamplingParams { logit_bias: vec![(1, -100.0)], ..SamplingParams::greedy() }, &[]);
        assert_eq!(banned.sample(&mut [1.0, 5.0, 2.0], &PLAIN), 2);
        let mut promoted = Sampler::new(SamplingParams { logit_bias: vec![(0, 100.0)], ..params(|_| {}) }, &[]);
        for _ in 0..20 {
            assert_eq!(promoted.sample(&mut [1.0, 5.0, 2.0], &PLAIN), 0);
        }
    }

    #[test]
    fn repetition_penalty_covers_the_prompt() {
        let mut s = Sampler::new(SamplingParams { repetition_penalty: 4.0, ..SamplingParams::greedy() }, &[0]);
        assert_eq!(s.sample(&mut [2.0, 1.0], &PLAIN), 1);
    }

    const JSONISH: Letters = Letters(&["{", "}", "\"a\"", ":", "1", "x", " ", "2}", "<end>"]);

    /// A constraint to `grammar` over `vocab`.
    fn constrained(vocab: &Letters, grammar: &OutputGrammar) -> Option<Constraint> {
        Some(Grammars::for_vocabulary(vocab, vocab.0.len()).unwrap().constraint(grammar).unwrap())
    }

    fn small_object() -> OutputGrammar {
        OutputGrammar::json_schema(&serde_json::json!({
            "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": false
        }))
        .unwrap()
    }

    /// Samples with random logits until the end token or `limit` tokens.
    fn constrained_output(params: SamplingParams, logit_seed: u64, limit: usize) -> (String, bool) {
        use rand::Rng;
        let mut s = Sampler::new(params, &[]).with_constraint(constrained(&JSONISH, &small_object()));
        let mut noise = StdRng::seed_from_u64(logit_seed);
        let mut out = String::new();
        for _ in 0..limit {
            let mut logits: Vec<f32> = (0..JSONISH.0.len()).map(|_| noise.random_range(-5.0..5.0)).collect();
            let t = s.sample(&mut logits, &JSONISH);
            if JSONISH.ends_generation(t) {
                return (out, true);
            }
            out.push_str(JSONISH.0[t as usize]);
        }
        (out, false)
    }

    #[test]
    fn a_grammar_overrides_the_likeliest_token() {
        let mut s = Sampler::new(SamplingParams::greedy(), &[])
            .with_constraint(constrained(&JSONISH, &OutputGrammar::json_object()));
        // "x" is by far the likeliest, but an object must open with "{".
        assert_eq!(s.sample(&mut [0.0, 0.0, 0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0], &JSONISH), 0);
    }

    #[test]
    fn when_no_token_fits_the_grammar_the_output_ends_cut_short() {
        let mut s = Sampler::new(SamplingParams::greedy(), &[])
            .with_constraint(constrained(&PLAIN, &OutputGrammar::json_object()));
        // No token of this vocabulary opens an object.
        let token = s.sample(&mut [5.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0], &PLAIN);
        assert!(PLAIN.ends_generation(token));
        assert!(s.cut_short(), "an end forced by the grammar is not a natural stop");
        let mut complete = Sampler::new(SamplingParams::greedy(), &[])
            .with_constraint(constrained(&JSONISH, &OutputGrammar::json_object()));
        assert_eq!(complete.sample(&mut [0.0, 9.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], &JSONISH), 0);
        assert_eq!(complete.sample(&mut [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], &JSONISH), 1);
        let end = complete.sample(&mut [0.0; 9], &JSONISH);
        assert!(JSONISH.ends_generation(end) && !complete.cut_short(), "a finished object ends naturally");
    }

    proptest! {
        #[test]
        fn constrained_output_always_matches_its_grammar(
            logit_seed in any::<u64>(),
            greedy in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let params = if greedy { SamplingParams::greedy() } else { SamplingParams { seed: Some(seed), ..SamplingParams::default() } };
            let (out, ended) = constrained_output(params, logit_seed, 64);
            if ended {
                let value: serde_json::Value = serde_json::from_str(&out).map_err(|e| TestCaseError::fail(format!("{out:?}: {e}")))?;
                prop_assert!(value["a"].is_i64() && value.as_object().unwrap().len() == 1, "{out:?}");
            } else {
                prop_assert!(out.starts_with('{'), "{out:?}");
            }
        }

        #[test]
        fn a_drawn_token_is_always_one_with_finite_logit(
            logits in proptest::collection::vec(prop_oneof![-20.0f32..20.0, Just(f32::NEG_INFINITY)], 1..300),
            temperature in 0.05f32..2.0,
            top_p in 0.01f32..=1.0,
            top_k in proptest::option::of(1u32..50),
            min_p in 0.0f32..0.5,
            seed in any::<u64>(),
        ) {
            prop_assume!(logits.iter().any(|l| l.is_finite()));
            let p = SamplingParams { temperature, top_p, top_k, min_p, seed: Some(seed), ..SamplingParams::default() };
            let mut s = Sampler::new(p, &[]);
            let t = s.sample(&mut logits.clone(), &PLAIN) as usize;
            prop_assert!(t < logits.len());
            prop_assert!(logits[t].is_finite());
        }

        #[test]
        fn log_probabilities_are_a_distribution_most_likely_first(
            logits in proptest::collection::vec(prop_oneof![-30.0f32..30.0, Just(f32::NEG_INFINITY)], 1..300),
            top in 0usize..8,
            pick in any::<prop::sample::Index>(),
        ) {
            prop_assume!(logits.iter().any(|l| l.is_finite()));
            let token = pick.index(logits.len()) as u32;
            let lp = log_probabilities(&logits, token, top);
            prop_assert!(lp.logprob <= 1e-5);
            prop_assert_eq!(lp.logprob.is_finite(), logits[token as usize].is_finite());
            prop_assert_eq!(lp.top.len(), top.min(logits.iter().filter(|l| l.is_finite()).count()));
            prop_assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
            let mass: f32 = lp.top.iter().map(|&(_, l)| l.exp()).sum();
            prop_assert!(mass <= 1.0 + 1e-4);
            if let Some(&(best, l)) = lp.top.first() {
                prop_assert_eq!(logits[best as usize], logits.iter().copied().fold(f32::NEG_INFINITY, f32::max));
                prop_assert!(l >= lp.logprob - 1e-5);
            }
            let total: f32 = (0..logits.len() as u32).map(|t| log_probabilities(&logits, t, 0).logprob.exp()).sum();
            prop_assert!((total - 1.0).abs() < 1e-3, "{total}");
        }
    }
}
