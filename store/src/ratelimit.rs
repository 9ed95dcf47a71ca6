//! Per-key rate limits on `/v1`: requests per minute and tokens per minute.
//!
//! Counts live in the database (`rate_windows`), one row per key and fixed
//! window, incremented with one atomic upsert per request — so every gateway
//! replica sharing one PostgreSQL (or one SQLite file) counts against the
//! same budget. Whether a request is admitted is the pure policy
//! `greenthread_core::rate_limit::decide`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, OnConflict, Query};
use sea_orm::{ConnectionTrait, DbErr};
use uuid::Uuid;

pub use greenthread_core::rate_limit::{KeyLimits, RateStatus, decide, per_window};

/// The window a moment falls in: its start (unix seconds) and the time left.
pub fn window_of(now: DateTime<Utc>, window: Duration) -> (i64, Duration) {
    let width = i64::try_from(window.as_secs().max(1)).unwrap_or(60);
    let t = now.timestamp();
    let start = t - t.rem_euclid(width);
    let left_ms = (start + width) * 1000 - now.timestamp_millis();
    (start, Duration::from_millis(u64::try_from(left_ms.max(1)).unwrap_or(1)))
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

    use super::*;

    #[test]
    fn windows_are_aligned_and_report_the_time_left() {
        let now = Utc.timestamp_millis_opt(1_000_030_500).unwrap();
        let (start, left) = window_of(now, Duration::from_secs(60));
        assert_eq!(start, 1_000_020);
        assert_eq!(left, Duration::from_millis(49_500));
    }
}
