//! Which tokens of which sequences go into the next forward pass.
//!
//! Sequences that are decoding get their one token every step, so a long
//! prompt never stalls the streams already running; prompts are then fed
//! in chunks, first come first served, with what is left of the budget.

/// Tokens one forward pass takes at most. Large enough that prompt chunks
/// keep the matrix kernels busy, small enough that decoding sequences
/// sharing the step wait at most a few hundred milliseconds on a CPU.
pub const STEP_TOKEN_BUDGET: usize = 256;

/// For each sequence (by its count of not-yet-processed tokens), how many
/// to process this step; zero leaves it out.
pub fn plan_step(pending: &[usize], budget: usize) -> Vec<usize> {
    let budget = budget.max(1);
    let mut take = vec![0; pending.len()];
    let mut left = budget;
    for (t, &p) in take.iter_mut().zip(pending) {
        if p == 1 && left > 0 {
            *t = 1;
            left -= 1;
        }
    }
    for (t, &p) in take.iter_mut().zip(pending) {
        if p > 1 && left > 0 {
            *t = p.min(left);
            left -= *t;
        }
    }
    take
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn decoders_are_served_before_prompts() {
        assert_eq!(plan_step(&[300, 1, 1], 256), [254, 1, 1]);
    }

    #[test]
    fn prompts_are_chunked_first_come_first_served() {
        assert_eq!(plan_step(&[100, 200, 0], 256), [100, 156, 0]);
    }

    proptest! {
        #[test]
        fn a_plan_respects_the_budget_and_always_makes_progress(
            pending in proptest::collection::vec(0usize..1000, 0..40),
            budget in 1usize..600,
        ) {
            let plan = plan_step(&pending, budget);
            prop_assert_eq!(plan.len(), pending.len());
            prop_assert!(plan.iter().sum::<usize>() <= budget);
            for (t, p) in plan.iter().zip(&pending) {
                prop_assert!(t <= p);
            }
            if pending.iter().any(|&p| p > 0) {
                prop_assert!(plan.iter().any(|&t| t > 0));
            }
            let decoders = pending.iter().filter(|&&p| p == 1).count();
            if decoders <= budget {
                for (t, p) in plan.iter().zip(&pending) {
                    if *p == 1 { prop_assert_eq!(*t, 1); }
                }
            }
        }
    }
}
