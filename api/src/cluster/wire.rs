//! What nodes and schedulers say to each other over HTTP.

use greenthread_core::{ModelName, NodeError, NodeId, Tier, TierUsage, WarmTier};
use greenthread_scheduler::AcquireError;
use serde::{Deserialize, Serialize};

/// A node's heartbeat: who it is, where to reach it, and what it holds.
/// The first heartbeat registers the node; later ones keep it alive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub id: NodeId,
    /// Base URL the scheduler reaches the node at (`http://10.0.0.5:8090`).
    pub url: String,
    pub device_budget: u64,
    pub tiers: Vec<TierUsage>,
    /// The fastest tier holding each model the node has weights for.
    pub holdings: Vec<(ModelName, Tier)>,
    /// Changes whenever the node process restarts, so a restart is noticed
    /// even between two heartbeats.
    pub instance: String,
    /// External engines that exited on their own since the last heartbeat,
    /// with why: their replicas fail and restart on the next request.
    #[serde(default)]
    pub engine_exits: Vec<(ModelName, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SleepRequest {
    pub warm_tier: WarmTier,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SleepResponse {
    pub tier: Tier,
}

/// A failed node operation, as the node reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeErrorBody {
    pub error: NodeError,
}

/// A gateway asks the scheduler for a replica of `model`, not on `avoid`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRequest {
    pub model: ModelName,
    #[serde(default)]
    pub avoid: Vec<NodeId>,
}

/// The replica a gateway may send one request to: the first line of the
/// lease stream. The lease lasts as long as that stream stays open.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseGrant {
    pub node: NodeId,
    /// Base URL of the node (`http://10.0.0.5:8090`).
    pub base: String,
}

/// Why the scheduler gave no lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRefused {
    pub error: AcquireError,
}

/// An operator's sleep of `model`, asked of the scheduler by a gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SleepModel {
    pub model: ModelName,
}
