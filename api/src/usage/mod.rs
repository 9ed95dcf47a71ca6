//! Usage metering: one `usage_records` row per request — key, project,
//! model, input and output tokens, audio seconds, characters and documents,
//! latency, wake wait, status — also for a stream the client abandons.
//!
//! The hot path only hands a record to a bounded channel (never waits; a
//! full channel drops the record and counts it); a writer task inserts them
//! in batches, and [`UsageMeter::flush`] writes what is left at shutdown.
//! A batch the database refuses (it is down, or restarting) is kept and
//! written again until it goes in; each record's id is fixed when it is
//! queued, so a batch written twice (its first commit's answer lost) is
//! stored once.
//!
//! Token counts of an answer generated in this process come typed from the
//! handler that generated it (a [`Tally`] on the response). An answer
//! forwarded from a node has them only in its text: a whole answer's
//! `usage`, or for a stream the `: usage {…}` comment line every GreenThread
//! stream ends with (SSE comments are invisible to clients).

mod observe;
mod tally;
mod units;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, EntityTrait};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub use self::observe::{UsageContext, observe};
pub use self::tally::{Counted, Tally};
pub use self::units::{UNITS_HEADER, Units};
pub use crate::http::access::WakeWait;
use greenthread_store::Store;
use greenthread_store::entities::usage_record;

/// Records waiting for the writer before new ones are dropped: a few
/// seconds of traffic at thousands of requests a second.
const QUEUE: usize = 16_384;
/// Most records one insert writes.
const BATCH: usize = 500;
/// Longest a record waits in a partial batch: what a process killed
/// without warning can lose of the requests it answered.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Waits between tries of a batch the database refused, doubling up to the last.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MOST: Duration = Duration::from_secs(5);
/// How often old rate-limit windows are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageStatus {
    Ok,
    /// The answer was an error, or a stream ended with one.
    Error,
    /// The client went away before the answer was complete.
    Aborted,
}

impl UsageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Aborted => "aborted",
        }
    }
}

/// One request's usage.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageEvent {
    pub at: DateTime<Utc>,
    pub key_id: Option<Uuid>,
    pub project_id: Uuid,
    pub model: String,
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub latency: Duration,
    pub wake_wait: Duration,
    pub status: UsageStatus,
    pub request_id: Option<String>,
    /// Audio, characters and documents, for the kinds counted in them.
    pub units: Units,
}

enum Message {
    /// A record and the id it is stored under.
    Record(Uuid, UsageEvent),
    Flush(oneshot::Sender<()>),
}

/// The handle requests record through; cheap to clone.
#[derive(Clone)]
pub struct UsageMeter {
    tx: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
    store: Store,
}

impl UsageMeter {
    /// Starts the writer task; it also adds each record's tokens to its
    /// key's rate-limit window of width `rate_window`.
    pub fn start(store: Store, rate_window: Duration) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(store.clone(), rx, rate_window));
        Self { tx, dropped: Arc::new(AtomicU64::new(0)), store }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.store.now()
    }

    /// Queues a record without waiting.
    pub fn record(&self, event: UsageEvent) {
        if self.tx.try_send(Message::Record(Uuid::now_v7(), event)).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "Usage queue full; dropping usage records");
            }
        }
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every record queued so far is written.
    pub async fn flush(&self) {
        let (reply, done) = oneshot::channel();
        if self.tx.send(Message::Flush(reply)).await.is_ok() {
            let _ = done.await;
        }
    }
}

async fn write_loop(store: Store, mut rx: mpsc::Receiver<Message>, rate_window: Duration) {
    let mut pending = Pending::default();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Some(Message::Record(id, e)) => {
                    pending.push(id, e);
                    if pending.full_batch() {
                        pending.write(&store, rate_window).await;
                    }
                }
                Some(Message::Flush(reply)) => {
                    pending.write(&store, rate_window).await;
                    let _ = reply.send(());
                }
                None => {
                    pending.write(&store, rate_window).await;
                    return;
                }
            },
            _ = tick.tick() => pending.write(&store, rate_window).await,
        }
    }
}

/// Records not yet written, and when the database may be tried again.
struct Pending {
    records: std::collections::VecDeque<(Uuid, UsageEvent)>,
    retry_at: Option<tokio::time::Instant>,
    backoff: Duration,
    pruned_at: Option<tokio::time::Instant>,
}

impl Default for Pending {
    fn default() -> Self {
        Self { records: std::collections::VecDeque::new(), retry_at: None, backoff: RETRY_FIRST, pruned_at: None }
    }
}

impl Pending {
    fn push(&mut self, id: Uuid, event: UsageEvent) {
        if self.records.len() >= QUEUE {
            // The database has been down for a long time: keep the newest.
            self.records.pop_front();
            tracing::warn!("Usage records waiting for the database past {QUEUE}; dropping the oldest");
        }
        self.records.push_back((id, event));
    }

    fn full_batch(&self) -> bool {
        self.records.len() >= BATCH && self.retry_at.is_none()
    }

    /// Writes every pending record, a batch at a time, unless the database
    /// refused the last try too recently; a refused batch stays for the next.
    async fn write(&mut self, store: &Store, rate_window: Duration) {
        if self.retry_at.is_some_and(|at| tokio::time::Instant::now() < at) {
            return;
        }
        while !self.records.is_empty() {
            let n = self.records.len().min(BATCH);
            let batch: Vec<(Uuid, UsageEvent)> = self.records.iter().take(n).cloned().collect();
            match write(store, &batch, rate_window).await {
                Ok(()) => {
                    self.records.drain(..n);
                    self.retry_at = None;
                    self.backoff = RETRY_FIRST;
                }
                Err(e) => {
                    tracing::warn!(error = %e, records = self.records.len(), retry_in_ms = self.backoff.as_millis() as u64,
                        "Cannot write usage records yet; they are kept and tried again");
                    self.retry_at = Some(tokio::time::Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(RETRY_MOST);
                    return;
                }
            }
        }
        if self.pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            self.pruned_at = Some(tokio::time::Instant::now());
            let oldest = store.now().timestamp() - 2 * i64::try_from(rate_window.as_secs()).unwrap_or(60) - 60;
            if let Err(e) = greenthread_store::ratelimit::prune(store.db(), oldest).await {
                tracing::warn!(error = %e, "Cannot prune rate-limit windows");
            }
        }
    }
}

/// Counts `batch`'s tokens against their keys' rate-limit windows and
/// inserts its records, in one transaction: a batch the database refuses
/// leaves nothing behind to count twice. A record whose id is already
/// stored (a batch committed whose answer was lost) is skipped.
async fn write(store: &Store, batch: &[(Uuid, UsageEvent)], rate_window: Duration) -> Result<(), sea_orm::DbErr> {
    use sea_orm::TransactionTrait as _;
    let mut windows: std::collections::BTreeMap<(Uuid, i64), i64> = std::collections::BTreeMap::new();
    for (_, e) in batch {
        if let Some(key) = e.key_id {
            let (start, _) = greenthread_store::ratelimit::window_of(e.at, rate_window);
            *windows.entry((key, start)).or_default() += i64::from(e.input_tokens) + i64::from(e.output_tokens);
        }
    }
    let tx = store.db().begin().await?;
    for ((key, start), tokens) in windows.into_iter().filter(|(_, t)| *t > 0) {
        greenthread_store::ratelimit::add_tokens(&tx, key, start, tokens).await?;
    }
    let rows = batch.iter().map(|(id, e)| usage_record::ActiveModel {
        id: Set(*id),
        at: Set(e.at),
        key_id: Set(e.key_id),
        project_id: Set(e.project_id),
        model: Set(e.model.clone()),
        input_tokens: Set(i32::try_from(e.input_tokens).unwrap_or(i32::MAX)),
        output_tokens: Set(i32::try_from(e.output_tokens).unwrap_or(i32::MAX)),
        latency_ms: Set(i64::try_from(e.latency.as_millis()).unwrap_or(i64::MAX)),
        wake_ms: Set(i64::try_from(e.wake_wait.as_millis()).unwrap_or(i64::MAX)),
        status: Set(e.status.as_str().to_owned()),
        request_id: Set(e.request_id.clone()),
        audio_ms: Set(i64::try_from(e.units.audio_ms).unwrap_or(i64::MAX)),
        characters: Set(i64::try_from(e.units.characters).unwrap_or(i64::MAX)),
        documents: Set(i64::try_from(e.units.documents).unwrap_or(i64::MAX)),
    });
    usage_record::Entity::insert_many(rows).on_conflict_do_nothing_on([usage_record::Column::Id]).exec(&tx).await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use greenthread_store::entities::usage_record;
    use greenthread_store::{Store, SystemClock};
    use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait};

    use super::*;

    fn event(request_id: &str) -> UsageEvent {
        UsageEvent {
            at: Utc::now(),
            key_id: None,
            project_id: Uuid::now_v7(),
            model: "m".into(),
            input_tokens: 3,
            output_tokens: 4,
            latency: Duration::from_millis(5),
            wake_wait: Duration::ZERO,
            status: UsageStatus::Ok,
            request_id: Some(request_id.into()),
            units: Units::default(),
        }
    }

    async fn store(dir: &std::path::Path) -> Store {
        Store::open(&Store::sqlite_url(dir), Arc::new(SystemClock)).await.unwrap_or_else(|e| panic!("{e}"))
    }

    async fn stored(store: &Store) -> u64 {
        usage_record::Entity::find().count(store.db()).await.unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn records_the_database_refuses_are_kept_and_written_when_it_is_back() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = store(dir.path()).await;
        let meter = UsageMeter::start(store.clone(), Duration::from_secs(60));
        let rename = |from: &str, to: &str| format!("ALTER TABLE {from} RENAME TO {to}");
        // The table gone stands for a database that refuses writes.
        store.db().execute_unprepared(&rename("usage_records", "usage_away")).await.unwrap_or_else(|e| panic!("{e}"));
        for id in ["a", "b", "c"] {
            meter.record(event(id));
        }
        meter.flush().await;
        store.db().execute_unprepared(&rename("usage_away", "usage_records")).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stored(&store).await, 0, "the refused batch was not written");
        tokio::time::sleep(RETRY_FIRST * 2).await;
        meter.flush().await;
        assert_eq!(stored(&store).await, 3, "every refused record is written once the database takes it");
    }

    #[tokio::test]
    async fn a_batch_written_twice_is_stored_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = store(dir.path()).await;
        let batch = vec![(Uuid::now_v7(), event("a")), (Uuid::now_v7(), event("b"))];
        write(&store, &batch, Duration::from_secs(60)).await.unwrap_or_else(|e| panic!("{e}"));
        write(&store, &batch, Duration::from_secs(60)).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stored(&store).await, 2);
    }
}
