//! Usage metering: one `usage_records` row per request — key, project,
//! model, input and output tokens, audio seconds, characters and documents,
//! latency, wake wait, status — also for a stream the client abandons.
//!
//! The hot path only hands a record to a bounded channel (never waits; a
//! full channel drops the record and counts it); a writer task inserts them
//! in batches, and [`UsageMeter::close`] flushes what is left at shutdown.
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
/// Longest a record waits in a partial batch.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

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
    Record(UsageEvent),
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
        if self.tx.try_send(Message::Record(event)).is_err() {
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
    let mut batch: Vec<UsageEvent> = Vec::with_capacity(BATCH);
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Some(Message::Record(e)) => {
                    batch.push(e);
                    if batch.len() >= BATCH {
                        write(&store, &mut batch, rate_window).await;
                    }
                }
                Some(Message::Flush(reply)) => {
                    write(&store, &mut batch, rate_window).await;
                    let _ = reply.send(());
                }
                None => {
                    write(&store, &mut batch, rate_window).await;
                    return;
                }
            },
            _ = tick.tick() => write(&store, &mut batch, rate_window).await,
        }
    }
}

async fn write(store: &Store, batch: &mut Vec<UsageEvent>, rate_window: Duration) {
    if batch.is_empty() {
        return;
    }
    // Tokens count against their key's rate-limit window.
    let mut windows: std::collections::BTreeMap<(Uuid, i64), i64> = std::collections::BTreeMap::new();
    for e in batch.iter() {
        if let Some(key) = e.key_id {
            let (start, _) = greenthread_store::ratelimit::window_of(e.at, rate_window);
            *windows.entry((key, start)).or_default() += i64::from(e.input_tokens) + i64::from(e.output_tokens);
        }
    }
    for ((key, start), tokens) in windows.into_iter().filter(|(_, t)| *t > 0) {
        if let Err(e) = greenthread_store::ratelimit::add_tokens(store.db(), key, start, tokens).await {
            tracing::warn!(error = %e, "Cannot count tokens against a rate limit");
        }
    }
    let oldest = store.now().timestamp() - 2 * i64::try_from(rate_window.as_secs()).unwrap_or(60) - 60;
    if let Err(e) = greenthread_store::ratelimit::prune(store.db(), oldest).await {
        tracing::warn!(error = %e, "Cannot prune rate-limit windows");
    }
    let rows = batch.drain(..).map(|e| usage_record::ActiveModel {
        id: Set(Uuid::now_v7()),
        at: Set(e.at),
        key_id: Set(e.key_id),
        project_id: Set(e.project_id),
        model: Set(e.model),
        input_tokens: Set(i32::try_from(e.input_tokens).unwrap_or(i32::MAX)),
        output_tokens: Set(i32::try_from(e.output_tokens).unwrap_or(i32::MAX)),
        latency_ms: Set(i64::try_from(e.latency.as_millis()).unwrap_or(i64::MAX)),
        wake_ms: Set(i64::try_from(e.wake_wait.as_millis()).unwrap_or(i64::MAX)),
        status: Set(e.status.as_str().to_owned()),
        request_id: Set(e.request_id),
        audio_ms: Set(i64::try_from(e.units.audio_ms).unwrap_or(i64::MAX)),
        characters: Set(i64::try_from(e.units.characters).unwrap_or(i64::MAX)),
        documents: Set(i64::try_from(e.units.documents).unwrap_or(i64::MAX)),
    });
    let rows: Vec<_> = rows.collect();
    let count = rows.len();
    if let Err(e) = usage_record::Entity::insert_many(rows).exec(store.db()).await {
        tracing::error!(error = %e, records = count, "Cannot write usage records");
    }
}
