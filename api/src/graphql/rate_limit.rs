//! A token bucket per API key for the management API: a burst of `burst`
//! requests, refilled at `per_second`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use uuid::Uuid;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct RateLimiter {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<Uuid, Bucket>>,
}

impl RateLimiter {
    /// Management traffic is people and CI jobs: 20 requests a second with
    /// bursts of 100 is far above either, and far below what would load the database.
    pub fn standard() -> Self {
        Self::new(100, 20.0)
    }

    pub fn new(burst: u32, per_second: f64) -> Self {
        Self { burst: f64::from(burst), per_second, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `key`, or says how long until one is free.
    ///
    /// # Errors
    /// The wait until the next token, when the bucket is empty.
    pub fn check(&self, key: Uuid) -> Result<(), Duration> {
        self.check_n(key, 1)
    }

    /// Takes `n` tokens for `key` at once (one per mutation field of a
    /// request), or none and says how long until `n` are free.
    ///
    /// # Errors
    /// The wait until `n` tokens are free, when the bucket holds fewer.
    pub fn check_n(&self, key: Uuid, n: usize) -> Result<(), Duration> {
        self.check_at(key, n as f64, Instant::now())
    }

    fn check_at(&self, key: Uuid, n: f64, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets.entry(key).or_insert(Bucket { tokens: self.burst, at: now });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= n {
            bucket.tokens -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((n.min(self.burst) - bucket.tokens) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_refill_rate_holds() {
        let limiter = RateLimiter::new(3, 2.0);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.check_at(a, 1.0, t0).is_ok()));
        let wait = limiter.check_at(a, 1.0, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(limiter.check_at(b, 1.0, t0).is_ok(), "keys have their own buckets");
        assert!(limiter.check_at(a, 1.0, t0 + Duration::from_millis(500)).is_ok());
        assert!(limiter.check_at(a, 1.0, t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn several_tokens_are_taken_together_or_not_at_all() {
        let limiter = RateLimiter::new(10, 1.0);
        let key = Uuid::now_v7();
        let t0 = Instant::now();
        assert!(limiter.check_at(key, 8.0, t0).is_ok());
        assert_eq!(limiter.check_at(key, 5.0, t0), Err(Duration::from_secs(3)), "2 left: 3 more to wait for");
        assert!(limiter.check_at(key, 2.0, t0).is_ok(), "the refused request took nothing");
    }
}
