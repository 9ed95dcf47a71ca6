//! Per-key rate limits: how many requests and tokens a key may use in a
//! window, and whether one more request is admitted. Pure; the counts
//! themselves live in the store.

use std::time::Duration;

/// A key's limits; `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    /// Most requests in flight at once, so one key's flood cannot take every
    /// slot of a model from the others.
    pub max_concurrent_requests: Option<u32>,
}

impl KeyLimits {
    /// Whether the key has a per-minute limit (counted in the store's windows).
    pub fn any(&self) -> bool {
        self.requests_per_minute.is_some() || self.tokens_per_minute.is_some()
    }
}

/// Where a key stands in its window, as the `x-ratelimit-*` headers say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateStatus {
    pub limit_requests: Option<u32>,
    pub remaining_requests: Option<u32>,
    pub limit_tokens: Option<u32>,
    pub remaining_tokens: Option<u32>,
    /// Until the window ends and the counts start over.
    pub reset: Duration,
}

/// A per-minute limit scaled to a window (rounded up: never below one).
pub fn per_window(per_minute: u32, window: Duration) -> u32 {
    let scaled = (u64::from(per_minute) * window.as_millis() as u64).div_ceil(60_000);
    u32::try_from(scaled.max(1)).unwrap_or(u32::MAX)
}

/// Pure: whether a request is admitted, given the window's counts after counting it.
pub fn decide(limits: KeyLimits, window: Duration, requests: u32, tokens: u64, reset: Duration) -> (bool, RateStatus) {
    let limit_requests = limits.requests_per_minute.map(|l| per_window(l, window));
    let limit_tokens = limits.tokens_per_minute.map(|l| per_window(l, window));
    let over_requests = limit_requests.is_some_and(|l| requests > l);
    let over_tokens = limit_tokens.is_some_and(|l| tokens >= u64::from(l));
    let status = RateStatus {
        limit_requests,
        remaining_requests: limit_requests.map(|l| l.saturating_sub(requests)),
        limit_tokens,
        remaining_tokens: limit_tokens.map(|l| u32::try_from(u64::from(l).saturating_sub(tokens)).unwrap_or(0)),
        reset,
    };
    (!over_requests && !over_tokens, status)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn limits_scale_to_the_window_and_never_reach_zero() {
        assert_eq!(per_window(60, Duration::from_secs(60)), 60);
        assert_eq!(per_window(60, Duration::from_secs(2)), 2);
        assert_eq!(per_window(1, Duration::from_secs(2)), 1);
    }

    #[test]
    fn requests_over_the_limit_and_tokens_at_it_are_refused() {
        let limits =
            KeyLimits { requests_per_minute: Some(3), tokens_per_minute: Some(100), max_concurrent_requests: None };
        let w = Duration::from_secs(60);
        let reset = Duration::from_secs(10);
        assert!(decide(limits, w, 3, 99, reset).0);
        let (ok, status) = decide(limits, w, 4, 0, reset);
        assert!(!ok);
        assert_eq!((status.remaining_requests, status.remaining_tokens), (Some(0), Some(100)));
        assert!(!decide(limits, w, 1, 100, reset).0);
        assert!(decide(KeyLimits::default(), w, 1_000_000, u64::MAX, reset).0);
    }

    proptest! {
        #[test]
        fn a_window_never_admits_more_than_its_request_limit(rpm in 1u32..10_000, window_s in 1u64..600, n in 1u32..20_000) {
            let window = Duration::from_secs(window_s);
            let limits = KeyLimits { requests_per_minute: Some(rpm), tokens_per_minute: None, max_concurrent_requests: None };
            let admitted = (1..=n).filter(|i| decide(limits, window, *i, 0, window).0).count() as u32;
            prop_assert_eq!(admitted, n.min(per_window(rpm, window)));
        }
    }
}
