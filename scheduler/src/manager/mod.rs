//! The model manager: one task that owns every model's replicas across the
//! nodes and decides, request by request, which models hold device memory
//! where.
//!
//! Requests [`ModelManager::acquire`] a lease on a serving replica (the one
//! with the fewest requests in flight). A model with no serving replica is
//! woken once for all its waiters (single flight) on the node
//! [`crate::placement`] chooses, after models there are put to sleep if its
//! device is full. Busy models gain replicas up to `max_replicas`; idle
//! replicas sleep after `idle_timeout`, down to `min_replicas`. A node that
//! leaves takes its replicas with it, and their models are placed again.
//! Node operations run as separate tasks and report back; the manager's own
//! state changes only in its loop.

mod actor;
mod door;
mod inbox;

use std::sync::Arc;
use std::time::Duration;

use greenthread_core::{
    ModelName, ModelSpec, ModelState, NodeControl, NodeId, ProjectName, Tier, TierUsage, WakeProgress, WakeReport,
};
use tokio::sync::{broadcast, oneshot};

use self::actor::{Actor, Command};
use self::door::{Door, Doors, Left};
use self::inbox::Inbox;
use crate::preemption::PreemptionRules;

/// How long a node that an operation could not reach is passed over by
/// placement and leases: longer than a cluster takes to declare a silent
/// node lost (3 s), so a dead node is taken out before it is tried again,
/// and short enough that a live node behind a passing fault is soon used again.
pub const UNREACHABLE_PASSED_OVER_FOR: Duration = Duration::from_secs(10);
/// Requests in flight per serving replica above which a model gains a
/// replica (when `max_replicas` allows): about the point where one
/// replica's batch stops absorbing more sequences for free.
pub const SCALE_UP_IN_FLIGHT: u32 = 4;

/// How the manager runs.
#[derive(Debug, Clone, Copy)]
pub struct ManagerConfig {
    /// Longest a request waits for its model to wake before it is answered
    /// with "retry later".
    pub wake_timeout: Duration,
    pub rules: PreemptionRules,
    /// How often idle timeouts and waiting wakes are re-checked. Small next
    /// to idle timeouts and the preemption deadlines, so they fire on time.
    pub tick: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            wake_timeout: Duration::from_secs(60),
            rules: PreemptionRules::default(),
            tick: Duration::from_millis(200),
        }
    }
}

/// A model to manage.
#[derive(Debug, Clone)]
pub struct ManagedModel {
    pub spec: ModelSpec,
    /// Device bytes it needs awake, until staging reports the real figure.
    pub device_bytes: u64,
}

/// A node the manager may place models on.
#[derive(Clone)]
pub struct NodeHandle {
    pub id: NodeId,
    pub control: Arc<dyn NodeControl>,
    /// Device bytes its awake models may hold together.
    pub device_budget: u64,
    /// What the node already holds: models on its device are adopted as
    /// serving replicas (a scheduler that restarted finds them so), the
    /// others tell placement where weights already are.
    pub holdings: Vec<(ModelName, Tier)>,
}

/// Why a request got no model. Serializable, so a gateway in another
/// process gets the same reason as one beside the scheduler.
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AcquireError {
    #[error("model {0} is not served here")]
    UnknownModel(String),
    #[error("model {model} did not wake within {waited:?}; retry later")]
    Timeout { model: String, waited: Duration, retry_after: Duration },
    #[error("model {model} cannot be served: {reason}")]
    Failed { model: String, reason: String },
    #[error("model {model} needs {needed} bytes of device memory, more than any node's device budget")]
    TooLarge { model: String, needed: u64 },
    #[error("the model manager has stopped")]
    Stopped,
}

/// Why a model changed state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    Startup,
    Request,
    Idle,
    Preempted {
        by: ModelName,
    },
    Failure,
    /// Its spec changed or it was removed.
    Updated,
    /// An operator asked for it (the console's or GraphQL's sleep).
    Operator,
}

impl Cause {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Request => "request",
            Self::Idle => "idle",
            Self::Preempted { .. } => "preempted",
            Self::Failure => "failure",
            Self::Updated => "updated",
            Self::Operator => "operator",
        }
    }
}

/// One state change of one replica.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TransitionEvent {
    pub model: ModelName,
    pub node: NodeId,
    pub from: ModelState,
    pub to: ModelState,
    /// Time spent in `from`.
    pub after: Duration,
    pub cause: Cause,
}

/// Receives what the manager does, for metrics.
pub trait Observer: Send + Sync {
    fn transition(&self, _event: &TransitionEvent) {}
    fn woke(&self, _model: &ModelName, _report: &WakeReport) {}
    fn wake_timed_out(&self, _model: &ModelName) {}
    fn node_lost(&self, _node: &NodeId) {}
}

/// An observer that ignores everything.
pub struct NoObserver;
impl Observer for NoObserver {}

/// One replica of a model.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReplicaStatus {
    pub node: NodeId,
    pub state: ModelState,
    pub device_bytes: u64,
    pub in_flight: u32,
    pub last_wake: Option<WakeReport>,
    /// How far its wake has come, while it wakes.
    #[serde(default)]
    pub wake_progress: Option<WakeProgress>,
}

/// A model and the manager's view of it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ModelStatus {
    pub name: ModelName,
    pub project: ProjectName,
    /// The most advanced state among its replicas (serving over waking over …).
    pub state: ModelState,
    /// Replicas holding device memory (waking, serving or draining).
    pub replicas: u32,
    pub device_bytes: u64,
    /// Device bytes one replica needs awake (known once staged).
    pub footprint_bytes: u64,
    pub in_flight: u32,
    /// Time since the model was last used, if ever.
    pub idle_for: Option<Duration>,
    pub last_wake: Option<WakeReport>,
    /// Requests waiting for it to wake.
    pub waiting: usize,
    /// How far the wake of its most advanced waking replica has come.
    #[serde(default)]
    pub wake_progress: Option<WakeProgress>,
    pub replica_list: Vec<ReplicaStatus>,
}

/// A node and what it holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NodeStatus {
    pub id: NodeId,
    pub device_budget: u64,
    pub device_used: u64,
    /// Its RAM and disk tiers, as the node reports them.
    pub tiers: Vec<TierUsage>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ManagerStatus {
    pub device_budget: u64,
    pub device_used: u64,
    pub nodes: Vec<NodeStatus>,
    pub models: Vec<ModelStatus>,
}

/// What an operator's sleep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct SleepOutcome {
    /// Replicas now going to sleep.
    pub sleeping: u32,
    /// Replicas left awake because `min_replicas` keeps them.
    pub kept_for_min: u32,
    /// Replicas left awake because requests are in flight on them (they
    /// sleep once idle for the idle timeout).
    pub busy: u32,
}

/// Permission to use a serving replica. While it lives the replica counts a
/// request in flight and will not be put to sleep.
#[derive(Debug)]
pub struct Lease {
    model: ModelName,
    node: NodeId,
    door: Arc<Door>,
    tx: Inbox,
}

impl Lease {
    pub fn model(&self) -> &ModelName {
        &self.model
    }

    /// The node whose replica serves this request.
    pub fn node(&self) -> &NodeId {
        &self.node
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // The count is the door's; the manager hears only of what it may wait for.
        if self.door.leave() == Left::Tell {
            self.tx.send_soon(Command::Recheck);
        }
    }
}

/// A handle to the manager task; cheap to clone.
#[derive(Clone)]
pub struct ModelManager {
    tx: Inbox,
    doors: Doors,
    events: broadcast::Sender<TransitionEvent>,
    observer: Arc<dyn Observer>,
    wake_timeout: Duration,
    retry_after: Duration,
}

impl ModelManager {
    /// Starts the manager task for `models` over `nodes`. With nodes at
    /// hand, every model is staged on one at once, and models with
    /// `min_replicas: 1` wake once staged; nodes may also join later.
    pub fn start(
        nodes: Vec<NodeHandle>,
        models: Vec<ManagedModel>,
        config: ManagerConfig,
        observer: Arc<dyn Observer>,
    ) -> Self {
        let (tx, rx) = Inbox::channel();
        let (events, _) = broadcast::channel(1024);
        let doors = Doors::default();
        let actor = Actor::new(models, config, tx.clone(), doors.clone(), events.clone(), observer.clone());
        tokio::spawn(actor.run(rx, nodes));
        Self { tx, doors, events, observer, wake_timeout: config.wake_timeout, retry_after: config.rules.force_after }
    }

    /// A lease on `model`, waking it if needed; waits at most the wake timeout.
    ///
    /// # Errors
    /// [`AcquireError`]: unknown model, timeout (retry later), a failed
    /// stage or wake, a model too large for any device, or a stopped manager.
    pub async fn acquire(&self, model: &ModelName) -> Result<Lease, AcquireError> {
        self.acquire_avoiding(model, &[]).await
    }

    /// As [`Self::acquire`], but not on the given nodes (a retry after one failed).
    ///
    /// # Errors
    /// As [`Self::acquire`].
    pub async fn acquire_avoiding(&self, model: &ModelName, avoid: &[NodeId]) -> Result<Lease, AcquireError> {
        // A serving replica is leased here, in the caller's task; the manager
        // task is asked only for a model it must wake (or place, or refuse).
        if let Some((node, door, out)) = self.doors.enter(model, avoid) {
            // A load that may call for another replica is the manager's to judge.
            if out >= SCALE_UP_IN_FLIGHT {
                self.tx.send_soon(Command::Recheck);
            }
            return Ok(Lease { model: model.clone(), node, door, tx: self.tx.clone() });
        }
        let (reply, rx) = oneshot::channel();
        let command = Command::Acquire { model: model.clone(), avoid: avoid.to_vec(), reply };
        if !self.tx.send(command).await {
            return Err(AcquireError::Stopped);
        }
        match tokio::time::timeout(self.wake_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(AcquireError::Stopped),
            Err(_) => {
                self.observer.wake_timed_out(model);
                Err(AcquireError::Timeout {
                    model: model.to_string(),
                    waited: self.wake_timeout,
                    retry_after: self.retry_after,
                })
            }
        }
    }

    /// Adds a node (or replaces one that rejoins).
    pub fn add_node(&self, node: NodeHandle) {
        self.tx.send_soon(Command::AddNode(node));
    }

    /// Takes a node out: its replicas are gone, their models placed again when needed.
    pub fn remove_node(&self, node: &NodeId) {
        self.doors.seal(|_, n| n == node);
        self.tx.send_soon(Command::RemoveNode(node.clone()));
    }

    /// Adds a model or changes its spec: a change the engine must load
    /// afresh drains and restarts its replicas; scaling changes apply at once.
    pub fn upsert(&self, model: ManagedModel) {
        let name = model.spec.name.clone();
        self.doors.seal(|m, _| *m == name);
        self.tx.send_soon(Command::Upsert(model));
    }

    /// A replica's engine stopped without being asked to: the replica is
    /// failed with `reason` (shown in `/status`), and the model's next
    /// request stages and wakes it again.
    pub fn replica_failed(&self, model: &ModelName, node: &NodeId, reason: String) {
        self.doors.seal(|m, n| m == model && n == node);
        self.tx.send_soon(Command::ReplicaFailed { model: model.clone(), node: node.clone(), reason });
    }

    /// Removes a model once its requests in flight are done; waiting requests fail.
    pub fn remove(&self, model: &ModelName) {
        self.doors.seal(|m, _| m == model);
        self.tx.send_soon(Command::Remove(model.clone()));
    }

    /// Puts the model's idle replicas to sleep now, down to `min_replicas`;
    /// the next request wakes it as usual.
    ///
    /// # Errors
    /// [`AcquireError::UnknownModel`], or [`AcquireError::Stopped`] when the manager task is gone.
    pub async fn sleep(&self, model: &ModelName) -> Result<SleepOutcome, AcquireError> {
        let (reply, rx) = oneshot::channel();
        if !self.tx.send(Command::Sleep { model: model.clone(), reply }).await {
            return Err(AcquireError::Stopped);
        }
        rx.await.map_err(|_| AcquireError::Stopped)?
    }

    /// Every model's replicas and the devices' use.
    ///
    /// # Errors
    /// [`AcquireError::Stopped`] when the manager task is gone.
    pub async fn status(&self) -> Result<ManagerStatus, AcquireError> {
        let (reply, rx) = oneshot::channel();
        if !self.tx.send(Command::Status(reply)).await {
            return Err(AcquireError::Stopped);
        }
        rx.await.map_err(|_| AcquireError::Stopped)
    }

    /// Resolves once the start-up staging is over (no replica fetching).
    pub async fn staged(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::WhenStaged(reply)).await {
            let _ = rx.await;
        }
    }

    /// Every state change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<TransitionEvent> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests;
