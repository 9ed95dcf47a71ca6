//! What the scheduler asks of a node, and what a node reports. In one
//! process the node answers directly; across machines the same trait is
//! implemented by a network client.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ModelName, ModelSpec, Tier, WarmTier};

/// A boxed future, so the trait stays object safe.
pub type NodeFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, NodeError>> + Send + 'a>>;

/// Why a node operation failed; the message is safe to show to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum NodeError {
    #[error("model {0} is not known to this node")]
    UnknownModel(String),
    #[error("{0}")]
    Artifact(String),
    #[error("{0}")]
    Engine(String),
    #[error("the node cannot be reached: {0}")]
    Unreachable(String),
}

/// What staging found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageReport {
    /// The fastest tier now holding the weights.
    pub tier: Tier,
    /// Device bytes the model will need awake.
    pub device_bytes: u64,
}

/// How a wake went.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WakeReport {
    /// The tier the weights came from.
    pub from: Tier,
    pub duration: Duration,
    /// Device bytes the model holds now.
    pub device_bytes: u64,
}

/// One tier of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierUsage {
    pub tier: Tier,
    /// Budget, in bytes.
    pub budget: u64,
    /// Bytes in use.
    pub used: u64,
}

/// Operations on a node's models. Each may take seconds (a wake moves
/// gigabytes); the scheduler never holds a lock across them.
pub trait NodeControl: Send + Sync {
    /// Brings the model's artifact onto the node, verified, and says where
    /// it now is and how much device memory it will need. A spec that
    /// differs from the one the node last staged under this name replaces
    /// it, and the old weights are forgotten.
    fn stage<'a>(&'a self, spec: &'a ModelSpec) -> NodeFuture<'a, StageReport>;

    /// Moves the model's weights onto the device from the fastest tier holding them.
    fn wake<'a>(&'a self, model: &'a ModelName) -> NodeFuture<'a, WakeReport>;

    /// Releases every device byte the model holds; its weights then wait in
    /// `warm` if the budget allows (else a slower tier). Returns that tier.
    fn sleep<'a>(&'a self, model: &'a ModelName, warm: WarmTier) -> NodeFuture<'a, Tier>;

    /// Drops everything the node holds of a model that no longer exists
    /// under `spec`: its instance, its RAM copy and its cached file. When
    /// the node has meanwhile been given a newer spec under the same name
    /// (the model was created again), only the old spec's file goes.
    fn forget<'a>(&'a self, spec: &'a ModelSpec) -> NodeFuture<'a, ()>;

    /// Budgets and use of the node's RAM and disk tiers.
    fn tiers(&self) -> Vec<TierUsage>;
}
