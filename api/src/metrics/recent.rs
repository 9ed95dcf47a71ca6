//! The last hour of each model, in memory, for the console's model page:
//! its state changes (their cause, and how long the state before lasted)
//! and its requests' times to first token. Bounded in time and in count;
//! a restart forgets it (what is kept for good is in the usage records and
//! the audit log).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// How far back the model page looks.
pub const WINDOW: Duration = Duration::from_secs(3600);
/// Most entries kept per model and kind, whatever the window holds.
const MAX_PER_MODEL: usize = 4096;

/// One state change of one replica.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub at: DateTime<Utc>,
    pub node: String,
    pub from: String,
    pub to: String,
    /// `request`, `idle`, `preempted`, …
    pub cause: String,
    /// The model a preemption made room for.
    pub preempted_by: Option<String>,
    /// How long the replica was in `from`.
    pub after: Duration,
}

#[derive(Debug, Default)]
struct Log {
    changes: VecDeque<Change>,
    /// When each first token went out, and after how many milliseconds.
    first_tokens: VecDeque<(DateTime<Utc>, f64)>,
}

/// Writes between sweeps for models whose last hour is over.
const SWEEP_EVERY: u32 = 1024;

#[derive(Debug, Default)]
pub struct Recent {
    models: Mutex<Models>,
}

#[derive(Debug, Default)]
struct Models {
    logs: HashMap<String, Log>,
    writes: u32,
}

impl Log {
    fn newest(&self) -> Option<DateTime<Utc>> {
        let change = self.changes.back().map(|c| c.at);
        let token = self.first_tokens.back().map(|(t, _)| *t);
        change.max(token)
    }
}

/// Drops what is older than the window before `now`, and the oldest past the cap.
fn prune<T>(queue: &mut VecDeque<T>, at: impl Fn(&T) -> DateTime<Utc>, now: DateTime<Utc>) {
    let oldest = now - chrono::Duration::from_std(WINDOW).unwrap_or_default();
    while queue.front().is_some_and(|e| at(e) < oldest) || queue.len() > MAX_PER_MODEL {
        queue.pop_front();
    }
}

impl Recent {
    fn lock(&self) -> std::sync::MutexGuard<'_, Models> {
        self.models.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds to `model`'s log; now and then drops the logs of models not heard of for the window
    /// (removed or renamed ones), so the map does not grow with every name ever used.
    fn write(&self, model: &str, now: DateTime<Utc>, f: impl FnOnce(&mut Log)) {
        let mut models = self.lock();
        f(models.logs.entry(model.to_owned()).or_default());
        models.writes = models.writes.wrapping_add(1);
        if models.writes.is_multiple_of(SWEEP_EVERY) {
            let oldest = now - chrono::Duration::from_std(WINDOW).unwrap_or_default();
            models.logs.retain(|_, log| log.newest().is_some_and(|t| t >= oldest));
        }
    }

    fn read<T: Default>(&self, model: &str, f: impl FnOnce(&Log) -> T) -> T {
        self.lock().logs.get(model).map(f).unwrap_or_default()
    }

    pub fn changed(&self, model: &str, change: Change) {
        let now = change.at;
        self.write(model, now, |log| {
            log.changes.push_back(change);
            prune(&mut log.changes, |c| c.at, now);
        });
    }

    pub fn first_token(&self, model: &str, at: DateTime<Utc>, ms: f64) {
        self.write(model, at, |log| {
            log.first_tokens.push_back((at, ms));
            prune(&mut log.first_tokens, |(t, _)| *t, at);
        });
    }

    /// The model's changes since `since`, oldest first.
    pub fn changes(&self, model: &str, since: DateTime<Utc>) -> Vec<Change> {
        self.read(model, |log| log.changes.iter().filter(|c| c.at >= since).cloned().collect())
    }

    /// The model's times to first token since `since`, in milliseconds.
    pub fn first_tokens(&self, model: &str, since: DateTime<Utc>) -> Vec<f64> {
        self.read(model, |log| log.first_tokens.iter().filter(|(t, _)| *t >= since).map(|(_, ms)| *ms).collect())
    }

    /// How many models have a log.
    #[cfg(test)]
    fn models(&self) -> usize {
        self.lock().logs.len()
    }
}

/// The `p`-th percentile (0 to 100) of `values` by nearest rank; `None` when empty.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = ((p.clamp(0.0, 100.0) / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.saturating_sub(1).min(sorted.len() - 1)])
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn change(seconds: i64, to: &str) -> Change {
        Change {
            at: at(seconds),
            node: "local".into(),
            from: "serving".into(),
            to: to.into(),
            cause: "idle".into(),
            preempted_by: None,
            after: Duration::from_secs(1),
        }
    }

    #[test]
    fn only_the_last_hour_is_kept_and_asked_for() {
        let recent = Recent::default();
        recent.changed("m", change(0, "sleeping"));
        recent.changed("m", change(1800, "waking"));
        recent.first_token("m", at(1800), 120.0);
        assert_eq!(recent.changes("m", at(0)).len(), 2);
        recent.changed("m", change(3700, "serving"));
        let kept: Vec<String> = recent.changes("m", at(0)).into_iter().map(|c| c.to).collect();
        assert_eq!(kept, ["waking", "serving"], "the change of an hour and more ago is gone");
        assert_eq!(recent.changes("m", at(3000)).len(), 1);
        assert_eq!(recent.first_tokens("m", at(0)), [120.0]);
        assert!(recent.changes("other", at(0)).is_empty());
    }

    #[test]
    fn reading_adds_nothing_and_models_gone_quiet_are_swept() {
        let recent = Recent::default();
        assert!(recent.changes("never-seen", at(0)).is_empty());
        assert_eq!(recent.models(), 0, "a read does not make a log");
        recent.changed("removed", change(0, "sleeping"));
        for i in 0..SWEEP_EVERY {
            recent.first_token("busy", at(4000), f64::from(i));
        }
        assert_eq!(recent.models(), 1, "the model not heard of for an hour is gone");
        assert!(recent.changes("removed", at(0)).is_empty());
        assert_eq!(recent.first_tokens("busy", at(0)).len(), SWEEP_EVERY as usize);
    }

    #[test]
    fn a_burst_is_capped() {
        let recent = Recent::default();
        for i in 0..(MAX_PER_MODEL + 10) {
            recent.first_token("m", at(0), i as f64);
        }
        let kept = recent.first_tokens("m", at(0));
        assert_eq!(kept.len(), MAX_PER_MODEL);
        assert_eq!(kept[0], 10.0, "the oldest go first");
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 95.0), Some(95.0));
        assert_eq!(percentile(&values, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    proptest! {
        #[test]
        fn a_percentile_is_one_of_the_values_and_grows_with_p(
            values in proptest::collection::vec(0.0f64..1e6, 1..200), p in 0.0f64..100.0, q in 0.0f64..100.0,
        ) {
            let a = percentile(&values, p).unwrap();
            prop_assert!(values.contains(&a));
            let (low, high) = if p <= q { (p, q) } else { (q, p) };
            prop_assert!(percentile(&values, low).unwrap() <= percentile(&values, high).unwrap());
        }
    }
}
