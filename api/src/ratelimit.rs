//! Per-key rate limits on `/v1`: requests per minute and tokens per minute.
//!
//! Counts live in the database (`rate_windows`), one row per key and fixed
//! window, incremented with one atomic upsert per request — so every gateway
//! replica sharing one PostgreSQL (or one SQLite file) counts against the
//! same budget. A request is refused when its window's request count is
//! over the limit, or the tokens its key used in the window (added as usage
//! is written, within half a second) reach the token limit.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, OnConflict, Query};
use sea_orm::{ConnectionTrait, DbErr};
use uuid::Uuid;

/// A key's limits; `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
}

impl KeyLimits {
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

/// The window a moment falls in: its start (unix seconds) and the time left.
pub fn window_of(now: DateTime<Utc>, window: Duration) -> (i64, Duration) {
    let width = i64::try_from(window.as_secs().max(1)).unwrap_or(60);
    let t = now.timestamp();
    let start = t - t.rem_euclid(width);
    let left_ms = (start + width) * 1000 - now.timestamp_millis();
    (start, Duration::from_millis(u64::try_from(left_ms.max(1)).unwrap_or(1)))
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

fn table() -> Alias {
    Alias::new("rate_windows")
}

/// Counts one request of `key` in the window of `now`; returns the window's
/// request and token counts after it. One atomic statement.
///
/// # Errors
/// When the database fails.
pub async fn count_request(db: &impl ConnectionTrait, key: Uuid, window_start: i64) -> Result<(u32, u64), DbErr> {
    use sea_orm::sea_query::ExprTrait as _;
    let requests = Alias::new("requests");
    let tokens = Alias::new("tokens");
    let insert = Query::insert()
        .into_table(table())
        .columns([Alias::new("key_id"), Alias::new("window_start"), requests.clone(), tokens.clone()])
        .values_panic([key.into(), window_start.into(), 1i32.into(), 0i64.into()])
        .on_conflict(
            OnConflict::columns([Alias::new("key_id"), Alias::new("window_start")])
                .value(requests.clone(), Expr::col((table(), requests.clone())).add(1))
                .to_owned(),
        )
        .returning(Query::returning().columns([requests, tokens]))
        .to_owned();
    let statement = db.get_database_backend().build(&insert);
    let row = db.query_one_raw(statement).await?.ok_or_else(|| DbErr::RecordNotFound("rate window".into()))?;
    let requests: i32 = row.try_get("", "requests")?;
    let tokens: i64 = row.try_get("", "tokens")?;
    Ok((u32::try_from(requests).unwrap_or(u32::MAX), u64::try_from(tokens).unwrap_or(0)))
}

/// Adds `tokens` used by `key` to the window starting at `window_start`.
///
/// # Errors
/// When the database fails.
pub async fn add_tokens(db: &impl ConnectionTrait, key: Uuid, window_start: i64, tokens: i64) -> Result<(), DbErr> {
    use sea_orm::sea_query::ExprTrait as _;
    let column = Alias::new("tokens");
    let insert = Query::insert()
        .into_table(table())
        .columns([Alias::new("key_id"), Alias::new("window_start"), Alias::new("requests"), column.clone()])
        .values_panic([key.into(), window_start.into(), 0i32.into(), tokens.into()])
        .on_conflict(
            OnConflict::columns([Alias::new("key_id"), Alias::new("window_start")])
                .value(column.clone(), Expr::col((table(), column)).add(tokens))
                .to_owned(),
        )
        .to_owned();
    db.execute_raw(db.get_database_backend().build(&insert)).await?;
    Ok(())
}

/// Drops windows that ended before `before` (unix seconds).
///
/// # Errors
/// When the database fails.
pub async fn prune(db: &impl ConnectionTrait, before: i64) -> Result<(), DbErr> {
    use sea_orm::sea_query::ExprTrait as _;
    let delete =
        Query::delete().from_table(table()).and_where(Expr::col(Alias::new("window_start")).lt(before)).to_owned();
    db.execute_raw(db.get_database_backend().build(&delete)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn windows_are_aligned_and_report_the_time_left() {
        let now = Utc.timestamp_millis_opt(1_000_030_500).unwrap();
        let (start, left) = window_of(now, Duration::from_secs(60));
        assert_eq!(start, 1_000_020);
        assert_eq!(left, Duration::from_millis(49_500));
    }

    #[test]
    fn limits_scale_to_the_window_and_never_reach_zero() {
        assert_eq!(per_window(60, Duration::from_secs(60)), 60);
        assert_eq!(per_window(60, Duration::from_secs(2)), 2);
        assert_eq!(per_window(1, Duration::from_secs(2)), 1);
    }

    #[test]
    fn requests_over_the_limit_and_tokens_at_it_are_refused() {
        let limits = KeyLimits { requests_per_minute: Some(3), tokens_per_minute: Some(100) };
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
            let limits = KeyLimits { requests_per_minute: Some(rpm), tokens_per_minute: None };
            let admitted = (1..=n).filter(|i| decide(limits, window, *i, 0, window).0).count() as u32;
            prop_assert_eq!(admitted, n.min(per_window(rpm, window)));
        }
    }
}
