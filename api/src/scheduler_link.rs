//! The scheduler as the management plane and the gateway see it: the
//! manager in this process, or the leader of a cluster reached over HTTP
//! (a gateway's case). GraphQL, `/status` and the console read and act
//! through this one type, so a gateway answers exactly as the scheduler would.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{StatusCode, header};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use greenthread_core::{ModelName, NodeId};
use greenthread_scheduler::{AcquireError, ManagerStatus, ModelManager, SleepOutcome, TransitionEvent};
use serde::de::DeserializeOwned;

use crate::cluster::NodeLink;
use crate::cluster::wire::{LeaseGrant, LeaseRefused, LeaseRequest, SleepModel};

/// How long a caller waits between two tries to reach a scheduler leader.
const LEADER_RETRY: Duration = Duration::from_millis(250);
/// Longest a quick call (status, sleep, the start of the event stream)
/// waits for the answer's head: a leader that vanished without closing
/// its connections must not hold a GraphQL request for minutes.
const QUICK: Duration = Duration::from_secs(10);
/// Silence on a stream that carries a keep-alive every second after which
/// its leader is taken for gone.
const SILENCE: Duration = Duration::from_secs(5);

/// The scheduler, wherever it runs.
#[derive(Clone)]
pub enum SchedulerLink {
    Local(ModelManager),
    Remote(Arc<RemoteScheduler>),
}

/// Why the scheduler could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    /// The scheduler answered with a refusal.
    #[error(transparent)]
    Refused(#[from] AcquireError),
    /// No scheduler leader answered (within the caller's patience, where it waits).
    #[error("no scheduler leader answers: {0}")]
    NoLeader(String),
    /// The scheduler answered something this process cannot read.
    #[error("the scheduler's answer is unreadable: {0}")]
    Garbled(String),
    /// The scheduler refused this process's cluster token.
    #[error("the scheduler refused this process's cluster token")]
    WrongToken,
}

impl LinkError {
    /// As an [`AcquireError`] for `model`, where callers report those.
    pub fn for_model(self, model: &ModelName) -> AcquireError {
        match self {
            Self::Refused(e) => e,
            other => AcquireError::Failed { model: model.to_string(), reason: other.to_string() },
        }
    }
}

/// A stream of the scheduler's state changes.
pub type Events = Pin<Box<dyn Stream<Item = TransitionEvent> + Send>>;

impl SchedulerLink {
    /// Every model's replicas and the devices' use.
    ///
    /// # Errors
    /// [`LinkError`] when the scheduler cannot answer.
    pub async fn status(&self) -> Result<ManagerStatus, LinkError> {
        match self {
            Self::Local(m) => Ok(m.status().await?),
            Self::Remote(r) => r.status().await,
        }
    }

    /// Every state change from now on. A remote stream reconnects by itself
    /// (across leader changes) and skips what happened while it was away.
    pub fn events(&self) -> Events {
        match self {
            Self::Local(m) => {
                let changes = tokio_stream::wrappers::BroadcastStream::new(m.subscribe());
                // A subscriber that fell behind skips what it missed.
                Box::pin(changes.filter_map(|e| async move { e.ok() }))
            }
            Self::Remote(r) => r.clone().events(),
        }
    }

    /// Wakes `model` and answers once it serves (the lease goes at once).
    ///
    /// # Errors
    /// Why it could not be woken.
    pub async fn wake(&self, model: &ModelName) -> Result<(), AcquireError> {
        match self {
            Self::Local(m) => m.acquire(model).await.map(drop),
            Self::Remote(r) => r.lease(model, &[], None).await.map(drop).map_err(|e| e.for_model(model)),
        }
    }

    /// Puts `model`'s idle replicas to sleep.
    ///
    /// # Errors
    /// Why it could not be done.
    pub async fn sleep(&self, model: &ModelName) -> Result<SleepOutcome, AcquireError> {
        match self {
            Self::Local(m) => m.sleep(model).await,
            Self::Remote(r) => r.sleep(model).await.map_err(|e| e.for_model(model)),
        }
    }
}

/// Most leases held at once as streams of the one HTTP/2 connection to the
/// scheduler, below the streams its listener allows a connection
/// (`http::server`'s 256). A lease past them opens an HTTP/1.1 connection
/// of its own, so the scheduler's stream limit never caps how many
/// requests a gateway has in flight.
const MULTIPLEXED_LEASES: usize = 192;

/// A scheduler leader reached over HTTP with the cluster token.
pub struct RemoteScheduler {
    /// Its base URL (on Kubernetes, the Service that selects the leader).
    pub base: String,
    pub link: NodeLink,
    /// Longest a lease waits for a leader to answer at all (a leader change
    /// takes seconds; requests wait it out rather than fail).
    pub patience: Duration,
    lanes: LeaseLanes,
}

/// How leases reach the scheduler: as streams of one kept-alive HTTP/2
/// connection, which spares each lease a connection's set-up (a lease's
/// stream is never read to its end, so an HTTP/1.1 connection that carried
/// one cannot be reused), and past [`MULTIPLEXED_LEASES`] on connections of
/// their own.
struct LeaseLanes {
    /// `None` for an `https://` scheduler, whose TLS front negotiates its own protocol.
    multiplexed: Option<reqwest::Client>,
    held: Arc<AtomicUsize>,
}

/// One of the [`MULTIPLEXED_LEASES`], given back when dropped.
struct LaneSlot(Arc<AtomicUsize>);

impl Drop for LaneSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl LeaseLanes {
    /// The multiplexed client and a slot on it, if one is free.
    fn take(&self) -> Option<(&reqwest::Client, LaneSlot)> {
        let client = self.multiplexed.as_ref()?;
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < MULTIPLEXED_LEASES).then_some(n + 1))
            .ok()?;
        Some((client, LaneSlot(self.held.clone())))
    }
}

/// A replica leased from a remote scheduler: held while this value lives,
/// released when it is dropped (which closes the lease's stream).
pub struct RemoteLease {
    _stream: Lines,
    _slot: Option<LaneSlot>,
}

/// What one try at the scheduler gave.
enum Try<T> {
    Done(T),
    /// No leader answered: try again shortly.
    NoLeader(String),
}

impl RemoteScheduler {
    /// The scheduler at `base` (`http://host:port`), reached through `link`.
    pub fn new(base: String, link: NodeLink, patience: Duration) -> Self {
        let multiplexed = base.starts_with("http://").then(crate::cluster::multiplexed_client);
        Self { base, link, patience, lanes: LeaseLanes { multiplexed, held: Arc::new(AtomicUsize::new(0)) } }
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.post_with(&self.link.client, path)
    }

    fn post_with(&self, client: &reqwest::Client, path: &str) -> reqwest::RequestBuilder {
        client.post(format!("{}{path}", self.base)).header(header::AUTHORIZATION, self.link.token.bearer())
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.link.client.get(format!("{}{path}", self.base)).header(header::AUTHORIZATION, self.link.token.bearer())
    }

    /// Sends a request and waits up to `head` for the answer's head (the
    /// body may stream on); a successful answer comes back for the caller
    /// to read, a refusal as its reason, and no leader as [`Try::NoLeader`].
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        head: Duration,
    ) -> Result<Try<reqwest::Response>, LinkError> {
        let answer = match tokio::time::timeout(head, request.send()).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return Ok(Try::NoLeader(e.to_string())),
            Err(_) => return Ok(Try::NoLeader(format!("{} did not answer within {head:?}", self.base))),
        };
        let status = answer.status();
        // A standby (or no endpoint behind the Service) answers 503; a proxy 502/504.
        if matches!(status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT) {
            return Ok(Try::NoLeader(format!("{} answered {status}", self.base)));
        }
        if status.is_success() {
            return Ok(Try::Done(answer));
        }
        match answer.json::<LeaseRefused>().await {
            Ok(refused) => Err(LinkError::Refused(refused.error)),
            Err(_) if status == StatusCode::UNAUTHORIZED => Err(LinkError::WrongToken),
            Err(e) => Err(LinkError::Garbled(format!("{status}: {e}"))),
        }
    }

    /// Leases a replica of `model`, not on `avoid`, waiting up to
    /// [`Self::patience`] for a leader.
    ///
    /// # Errors
    /// The scheduler's refusal, or [`LinkError::NoLeader`] past the patience.
    pub async fn lease(
        &self,
        model: &ModelName,
        avoid: &[NodeId],
        request_id: Option<&str>,
    ) -> Result<(LeaseGrant, RemoteLease), LinkError> {
        // Asked in the query string, the lease's request has no body: one HTTP/2 frame.
        let query = LeaseRequest { model: model.clone(), avoid: avoid.to_vec() }.query_string();
        let deadline = tokio::time::Instant::now() + self.patience;
        loop {
            // The scheduler answers once the replica serves: a wake may take its whole wake timeout.
            let head = self.patience + QUICK;
            let ask_lease = |client: &reqwest::Client| {
                let request = self.post_with(client, &format!("/internal/v1/leases?{query}"));
                match request_id {
                    Some(id) => request.header(crate::http::stamp::REQUEST_ID, id),
                    None => request,
                }
            };
            let mut answer = Try::NoLeader(String::new());
            let mut slot = None;
            if let Some((client, taken)) = self.lanes.take() {
                answer = self.send(ask_lease(client), head).await?;
                slot = Some(taken);
            }
            // A scheduler that cannot be reached over HTTP/2 (or a proxy
            // before it that speaks only HTTP/1.1) is asked over HTTP/1.1.
            if matches!(answer, Try::NoLeader(_)) {
                slot = None;
                answer = self.send(ask_lease(&self.link.client), head).await?;
            }
            let reason = match answer {
                Try::Done(answer) => {
                    let mut lines = Lines::new(Box::pin(answer.bytes_stream()));
                    match lines.next().await {
                        Some(line) => {
                            let grant = serde_json::from_slice(&line).map_err(|e| LinkError::Garbled(e.to_string()))?;
                            return Ok((grant, RemoteLease { _stream: lines, _slot: slot }));
                        }
                        // The leader went away before granting: nothing was leased.
                        None => "the lease stream ended before its grant".to_owned(),
                    }
                }
                Try::NoLeader(reason) => reason,
            };
            if tokio::time::Instant::now() + LEADER_RETRY >= deadline {
                return Err(LinkError::NoLeader(reason));
            }
            tracing::debug!(%reason, "No scheduler leader yet; retrying");
            tokio::time::sleep(LEADER_RETRY).await;
        }
    }

    async fn read<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, LinkError> {
        match self.send(request, QUICK).await? {
            Try::Done(answer) => answer.json().await.map_err(|e| LinkError::Garbled(e.to_string())),
            Try::NoLeader(reason) => Err(LinkError::NoLeader(reason)),
        }
    }

    /// The leader's status (no waiting: a caller showing state shows none).
    ///
    /// # Errors
    /// [`LinkError`] when no leader answers or it refuses.
    pub async fn status(&self) -> Result<ManagerStatus, LinkError> {
        self.read(self.get("/internal/v1/status")).await
    }

    /// An operator's sleep of `model`.
    ///
    /// # Errors
    /// [`LinkError`] when no leader answers or it refuses.
    pub async fn sleep(&self, model: &ModelName) -> Result<SleepOutcome, LinkError> {
        self.read(self.post("/internal/v1/sleep").json(&SleepModel { model: model.clone() })).await
    }

    /// The leader's state changes, reconnecting after a second whenever the
    /// stream breaks (a leader change), for as long as the stream is polled.
    pub fn events(self: Arc<Self>) -> Events {
        Box::pin(async_stream::stream! {
            loop {
                match self.send(self.get("/internal/v1/events"), QUICK).await {
                    Ok(Try::Done(answer)) => {
                        let mut lines = Lines::new(Box::pin(answer.bytes_stream()));
                        // The leader writes at least a keep-alive every second:
                        // silence means it is gone, even if the connection is not closed.
                        while let Ok(Some(line)) = tokio::time::timeout(SILENCE, lines.next()).await {
                            if let Ok(event) = serde_json::from_slice::<TransitionEvent>(&line) {
                                yield event;
                            }
                        }
                    }
                    Ok(Try::NoLeader(reason)) => tracing::debug!(%reason, "No scheduler leader for events yet"),
                    Err(e) => tracing::warn!(error = %e, "The scheduler refused the event stream"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }
}

/// The lines of a byte stream (empty ones are keep-alives).
struct Lines {
    stream: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buffer: BytesMut,
}

impl Lines {
    fn new(stream: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>) -> Self {
        Self { stream, buffer: BytesMut::new() }
    }

    /// The next line, or `None` when the stream ends or breaks.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                return Some(self.buffer.split_to(end + 1).freeze().slice(..end));
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_past_the_multiplexed_ones_take_connections_of_their_own_until_one_is_given_back() {
        let lanes = LeaseLanes { multiplexed: Some(reqwest::Client::new()), held: Arc::new(AtomicUsize::new(0)) };
        let mut slots: Vec<LaneSlot> = (0..MULTIPLEXED_LEASES).filter_map(|_| lanes.take().map(|(_, s)| s)).collect();
        assert_eq!(slots.len(), MULTIPLEXED_LEASES);
        assert!(lanes.take().is_none());
        slots.pop();
        assert!(lanes.take().is_some());
        let tls = LeaseLanes { multiplexed: None, held: Arc::new(AtomicUsize::new(0)) };
        assert!(tls.take().is_none());
    }
}
