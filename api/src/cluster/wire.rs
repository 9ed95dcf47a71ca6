//! What nodes and schedulers say to each other over HTTP.

use greenthread_core::{ModelName, NodeError, NodeId, Tier, TierUsage, WarmTier};
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
