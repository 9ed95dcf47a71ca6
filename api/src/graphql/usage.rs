//! Usage in time buckets, grouped by model or key.

use std::collections::BTreeMap;

use async_graphql::{Enum, SimpleObject};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use greenthread_store::entities::usage_record;

/// Most records one usage query reads; a narrower range reads fewer.
pub const MAX_RECORDS: u64 = 500_000;

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum UsageBucket {
    Minute,
    Hour,
    Day,
}

impl UsageBucket {
    fn width(self) -> TimeDelta {
        match self {
            Self::Minute => TimeDelta::minutes(1),
            Self::Hour => TimeDelta::hours(1),
            Self::Day => TimeDelta::days(1),
        }
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum UsageGroup {
    Model,
    Key,
}

/// The usage of one group in one time bucket.
#[derive(SimpleObject, Debug, Clone, PartialEq)]
pub struct UsagePoint {
    /// Start of the bucket.
    pub start: DateTime<Utc>,
    /// The model (grouped by model) or null.
    pub model: Option<String>,
    /// The key (grouped by key) or null (requests without a key, in open mode).
    pub key_id: Option<String>,
    pub requests: u64,
    pub errors: u64,
    /// Requests whose client went away before the answer was complete.
    pub aborted: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Seconds of audio heard (speech recognition).
    pub audio_seconds: f64,
    /// Characters spoken (text to speech).
    pub characters: u64,
    /// Documents ranked (reranking).
    pub documents: u64,
    pub avg_latency_ms: f64,
    /// Requests that waited for their model to wake (more than 10 ms).
    pub woken: u64,
    pub total_wake_ms: f64,
}

/// Wake waits below this are the lease round trip, not a wake.
const WOKEN_MS: i64 = 10;

/// One request's usage record.
#[derive(SimpleObject, Debug, Clone, PartialEq)]
pub struct UsageRecord {
    pub at: DateTime<Utc>,
    /// The `x-request-id` the request was answered under.
    pub request_id: Option<String>,
    pub model: String,
    pub key_id: Option<String>,
    pub input_tokens: i32,
    pub output_tokens: i32,
    /// Seconds of audio heard (speech recognition).
    pub audio_seconds: f64,
    /// Characters spoken (text to speech).
    pub characters: i64,
    /// Documents ranked (reranking).
    pub documents: i64,
    pub latency_ms: i64,
    pub wake_ms: i64,
    /// `ok`, `error` or `aborted`.
    pub status: String,
}

impl From<usage_record::Model> for UsageRecord {
    fn from(r: usage_record::Model) -> Self {
        Self {
            at: r.at,
            request_id: r.request_id,
            model: r.model,
            key_id: r.key_id.map(|k| k.to_string()),
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            audio_seconds: r.audio_ms as f64 / 1000.0,
            characters: r.characters,
            documents: r.documents,
            latency_ms: r.latency_ms,
            wake_ms: r.wake_ms,
            status: r.status,
        }
    }
}

/// The newest `limit` records of `projects` since `since`, of one request
/// id when given.
///
/// # Errors
/// When the database fails.
pub async fn records(
    db: &impl ConnectionTrait,
    projects: &[Uuid],
    since: DateTime<Utc>,
    request_id: Option<&str>,
    limit: u64,
) -> Result<Vec<UsageRecord>, sea_orm::DbErr> {
    use sea_orm::{QueryOrder, QuerySelect};
    let mut query = usage_record::Entity::find()
        .filter(usage_record::Column::ProjectId.is_in(projects.to_vec()))
        .filter(usage_record::Column::At.gte(since));
    if let Some(id) = request_id {
        query = query.filter(usage_record::Column::RequestId.eq(id));
    }
    let rows = query.order_by_desc(usage_record::Column::At).limit(limit).all(db).await?;
    Ok(rows.into_iter().map(UsageRecord::from).collect())
}

/// Reads the records of `projects` in `[since, until)` and sums them per bucket and group.
///
/// # Errors
/// When the database fails.
pub async fn points(
    db: &impl ConnectionTrait,
    projects: &[Uuid],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    bucket: UsageBucket,
    group: UsageGroup,
) -> Result<Vec<UsagePoint>, sea_orm::DbErr> {
    use sea_orm::QuerySelect;
    let rows = usage_record::Entity::find()
        .filter(usage_record::Column::ProjectId.is_in(projects.to_vec()))
        .filter(usage_record::Column::At.gte(since))
        .filter(usage_record::Column::At.lt(until))
        .limit(MAX_RECORDS)
        .all(db)
        .await?;
    Ok(aggregate(&rows, bucket, group))
}

/// Pure: sums `rows` per bucket and group, in time order.
pub fn aggregate(rows: &[usage_record::Model], bucket: UsageBucket, group: UsageGroup) -> Vec<UsagePoint> {
    let mut sums: BTreeMap<(DateTime<Utc>, Option<String>), (UsagePoint, i64)> = BTreeMap::new();
    for r in rows {
        let start = r.at.duration_trunc(bucket.width()).unwrap_or(r.at);
        let label = match group {
            UsageGroup::Model => Some(r.model.clone()),
            UsageGroup::Key => r.key_id.map(|k| k.to_string()),
        };
        let (point, latency) = sums.entry((start, label.clone())).or_insert_with(|| {
            let (model, key_id) = match group {
                UsageGroup::Model => (label.clone(), None),
                UsageGroup::Key => (None, label.clone()),
            };
            (
                UsagePoint {
                    start,
                    model,
                    key_id,
                    requests: 0,
                    errors: 0,
                    aborted: 0,
                    input_tokens: 0,
                    output_tokens: 0,
                    audio_seconds: 0.0,
                    characters: 0,
                    documents: 0,
                    avg_latency_ms: 0.0,
                    woken: 0,
                    total_wake_ms: 0.0,
                },
                0,
            )
        });
        point.requests += 1;
        point.errors += u64::from(r.status == "error");
        point.aborted += u64::from(r.status == "aborted");
        point.input_tokens += u64::try_from(r.input_tokens).unwrap_or(0);
        point.output_tokens += u64::try_from(r.output_tokens).unwrap_or(0);
        point.audio_seconds += r.audio_ms as f64 / 1000.0;
        point.characters += u64::try_from(r.characters).unwrap_or(0);
        point.documents += u64::try_from(r.documents).unwrap_or(0);
        point.woken += u64::from(r.wake_ms > WOKEN_MS);
        point.total_wake_ms += r.wake_ms as f64;
        *latency += r.latency_ms;
    }
    sums.into_values()
        .map(|(mut p, latency)| {
            p.avg_latency_ms = latency as f64 / p.requests.max(1) as f64;
            p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn row(minute: u32, second: u32, model: &str, status: &str, tokens: i32) -> usage_record::Model {
        usage_record::Model {
            id: Uuid::now_v7(),
            at: Utc.with_ymd_and_hms(2026, 1, 1, 10, minute, second).unwrap(),
            key_id: None,
            project_id: Uuid::nil(),
            model: model.into(),
            input_tokens: tokens,
            output_tokens: tokens * 2,
            latency_ms: 100,
            wake_ms: if status == "ok" { 300 } else { 0 },
            status: status.into(),
            request_id: None,
            audio_ms: i64::from(tokens) * 1500,
            characters: i64::from(tokens) * 10,
            documents: i64::from(tokens),
        }
    }

    #[test]
    fn rows_are_summed_per_minute_and_model() {
        let rows = [
            row(0, 5, "a", "ok", 1),
            row(0, 50, "a", "error", 2),
            row(0, 7, "b", "ok", 4),
            row(1, 0, "a", "aborted", 8),
        ];
        let points = aggregate(&rows, UsageBucket::Minute, UsageGroup::Model);
        assert_eq!(points.len(), 3);
        let first = &points[0];
        assert_eq!(
            (first.model.as_deref(), first.requests, first.errors, first.input_tokens, first.output_tokens),
            (Some("a"), 2, 1, 3, 6)
        );
        assert_eq!((first.woken, first.total_wake_ms, first.avg_latency_ms), (1, 300.0, 100.0));
        assert_eq!((first.audio_seconds, first.characters, first.documents), (4.5, 30, 3));
        assert_eq!(points[2].aborted, 1);
        let hourly = aggregate(&rows, UsageBucket::Hour, UsageGroup::Key);
        assert_eq!((hourly.len(), hourly[0].requests, hourly[0].key_id.clone()), (1, 4, None));
    }
}
