//! Which tokens of which sequences go into the next forward pass.
//!
//! Sequences that are decoding get their one token every step, so a long
//! prompt never stalls the streams already running; prompts are then fed
//! in chunks, first come first served. The chunk is small while any
//! sequence is decoding, because every running stream waits for the whole
//! step before its next token, and large when prompts have the step to
//! themselves.

/// Prompt tokens a step takes at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepBudget {
    /// While sequences are decoding. Every running stream waits for the
    /// whole step, so the chunk sets their worst gap between tokens; each
    /// step also repeats the decoders' own cost, so a smaller chunk brings a
    /// prompt's first token later. Measured with `bench/load.sh` on 2 CPU
    /// cores and a 0.5B model at 4 and 16 streams: 64 tokens gave gaps of
    /// 0.33 / 0.40 s at p99 and first tokens 3.3 / 12.8 s at p99; 256 gave
    /// 0.90 / 1.00 s and 2.6 / 9.4 s; 128 sits between (0.52 / 0.62 s and
    /// 3.5 / 11.7 s), its gaps below llama.cpp's server at both.
    pub while_decoding: usize,
    /// With no sequence decoding: large enough that the matrix kernels run
    /// at full speed.
    pub alone: usize,
}

/// The budget the builtin engine runs with.
pub const STEP_BUDGET: StepBudget = StepBudget { while_decoding: 128, alone: 256 };

/// For each sequence (by its count of not-yet-processed tokens), how many
/// to process this step; zero leaves it out. Every decoding sequence (one
/// pending token) takes part; prompts share what the budget allows.
pub fn plan_step(pending: &[usize], budget: StepBudget) -> Vec<usize> {
    let decoding = pending.contains(&1);
    let mut left = if decoding { budget.while_decoding } else { budget.alone }.max(1);
    pending
        .iter()
        .map(|&p| match p {
            1 => 1,
            0 => 0,
            _ => {
                let take = p.min(left);
                left -= take;
                take
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const BUDGET: StepBudget = StepBudget { while_decoding: 64, alone: 256 };

    #[test]
    fn decoders_are_served_and_prompts_take_the_small_chunk_beside_them() {
        assert_eq!(plan_step(&[300, 1, 1], BUDGET), [64, 1, 1]);
    }

    #[test]
    fn prompts_alone_are_chunked_first_come_first_served() {
        assert_eq!(plan_step(&[100, 200, 0], BUDGET), [100, 156, 0]);
    }

    #[test]
    fn many_decoders_never_starve_a_prompt() {
        let mut pending = vec![1; 100];
        pending.push(500);
        assert_eq!(plan_step(&pending, BUDGET)[100], 64);
    }

    proptest! {
        #[test]
        fn a_plan_serves_every_decoder_bounds_prompts_and_always_makes_progress(
            pending in proptest::collection::vec(0usize..1000, 0..40),
            while_decoding in 1usize..300,
            alone in 1usize..600,
        ) {
            let budget = StepBudget { while_decoding, alone };
            let plan = plan_step(&pending, budget);
            prop_assert_eq!(plan.len(), pending.len());
            let decoding = pending.contains(&1);
            let prompt_tokens: usize = plan.iter().zip(&pending).filter(|(_, p)| **p > 1).map(|(t, _)| t).sum();
            let limit = if decoding { while_decoding } else { alone };
            prop_assert!(prompt_tokens <= limit);
            for (t, p) in plan.iter().zip(&pending) {
                prop_assert!(t <= p);
                if *p == 1 { prop_assert_eq!(*t, 1); }
            }
            if pending.iter().any(|&p| p > 0) {
                prop_assert!(plan.iter().any(|&t| t > 0));
            }
            // The first prompt waiting always moves.
            if let Some(first) = pending.iter().position(|&p| p > 1) {
                prop_assert!(plan[first] > 0);
            }
        }
    }
}
