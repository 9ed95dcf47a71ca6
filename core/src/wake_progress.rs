//! How far along a wake is, for the people and proxies waiting on it:
//! the tier the weights come from, how long it has run, and — where the
//! model woke from the same tier before — a percentage estimated from that
//! wake's duration. Pure; the scheduler supplies the times.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ModelState, Tier, WakeReport};

/// A wake under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WakeProgress {
    pub from: Tier,
    /// Since the wake began.
    pub elapsed: Duration,
    /// What the last wake from the same tier took, if there was one.
    pub expected: Option<Duration>,
}

/// The highest percentage an estimate shows: a wake is done when the model
/// serves, not when the estimate runs out.
const MAX_ESTIMATE: u8 = 99;

impl WakeProgress {
    /// The progress of a replica in `state` for `in_state`, given its last
    /// wake; `None` unless it is waking.
    pub fn of(state: &ModelState, in_state: Duration, last_wake: Option<&WakeReport>) -> Option<Self> {
        let ModelState::Waking { from } = state else { return None };
        let expected = last_wake.filter(|w| w.from == *from && !w.duration.is_zero()).map(|w| w.duration);
        Some(Self { from: *from, elapsed: in_state, expected })
    }

    /// Estimated percentage done, where a previous wake gives an estimate.
    pub fn percent(&self) -> Option<u8> {
        let expected = self.expected?;
        let ratio = self.elapsed.as_secs_f64() / expected.as_secs_f64();
        Some((ratio * 100.0).clamp(0.0, f64::from(MAX_ESTIMATE)) as u8)
    }

    /// One line for people: `waking qwen from disk, 40%`, or the time so
    /// far where there is no estimate.
    pub fn describe(&self, model: &str) -> String {
        match self.percent() {
            Some(p) => format!("waking {model} from {}, {p}%", self.from),
            None => format!("waking {model} from {}, {:.1} s so far", self.from, self.elapsed.as_secs_f64()),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn report(from: Tier, ms: u64) -> WakeReport {
        WakeReport { from, duration: Duration::from_millis(ms), device_bytes: 1 }
    }

    #[test]
    fn only_a_waking_model_has_progress_and_only_a_like_wake_gives_an_estimate() {
        assert_eq!(WakeProgress::of(&ModelState::Serving, Duration::from_secs(1), None), None);
        let waking = ModelState::Waking { from: Tier::Disk };
        let same = report(Tier::Disk, 1000);
        let p = WakeProgress::of(&waking, Duration::from_millis(400), Some(&same)).unwrap_or_else(|| panic!("waking"));
        assert_eq!((p.percent(), p.describe("qwen")), (Some(40), "waking qwen from disk, 40%".to_owned()));
        let other = report(Tier::Ram, 100);
        let p =
            WakeProgress::of(&waking, Duration::from_millis(1234), Some(&other)).unwrap_or_else(|| panic!("waking"));
        assert_eq!((p.percent(), p.describe("qwen")), (None, "waking qwen from disk, 1.2 s so far".to_owned()));
    }

    proptest! {
        #[test]
        fn an_estimate_never_claims_a_finished_wake(elapsed in 0u64..100_000, expected in 1u64..100_000) {
            let p = WakeProgress {
                from: Tier::Ram,
                elapsed: Duration::from_millis(elapsed),
                expected: Some(Duration::from_millis(expected)),
            };
            let percent = p.percent().unwrap_or(100);
            prop_assert!(percent <= MAX_ESTIMATE);
        }
    }
}
