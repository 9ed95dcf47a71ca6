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

impl LeaseRequest {
    /// The question as a query string (`model=m&avoid=a,b`, without its
    /// `?`), so that asking is a request without a body: one HTTP/2 frame,
    /// which the scheduler answers without waiting for a second. Model names
    /// and node ids are slugs (`[a-z0-9._-]`), which a query carries as they are.
    pub fn query_string(&self) -> String {
        let mut query = format!("model={}", self.model.as_str());
        if !self.avoid.is_empty() {
            let avoid: Vec<&str> = self.avoid.iter().map(NodeId::as_str).collect();
            query.push_str(&format!("&avoid={}", avoid.join(",")));
        }
        query
    }
}

/// A lease's question as the scheduler reads it from the query string
/// ([`LeaseRequest::query_string`]).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LeaseQuery {
    pub model: Option<ModelName>,
    /// Node ids separated by commas (an id has none).
    pub avoid: Option<String>,
}

impl LeaseQuery {
    /// The question asked, if the query asks one (an earlier gateway asks in
    /// a JSON body instead).
    ///
    /// # Errors
    /// A node id in `avoid` that is not one.
    pub fn request(self) -> Result<Option<LeaseRequest>, String> {
        let Some(model) = self.model else { return Ok(None) };
        let avoid = match self.avoid.as_deref() {
            None | Some("") => Vec::new(),
            Some(ids) => ids
                .split(',')
                .map(|id| NodeId::parse(id).map_err(|e| format!("avoid: {e}")))
                .collect::<Result<_, _>>()?,
        };
        Ok(Some(LeaseRequest { model, avoid }))
    }
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

#[cfg(test)]
mod tests {
    use axum::extract::Query;
    use axum::http::Uri;

    use super::*;

    /// The query as the scheduler's handler reads it.
    fn read(query: &str) -> Result<Option<LeaseRequest>, String> {
        let uri: Uri = format!("/internal/v1/leases?{query}").parse().map_err(|e| format!("{e}"))?;
        let Query(query) = Query::<LeaseQuery>::try_from_uri(&uri).map_err(|e| e.to_string())?;
        query.request()
    }

    fn ask(model: &str, avoid: &[&str]) -> LeaseRequest {
        LeaseRequest {
            model: ModelName::parse(model).unwrap(),
            avoid: avoid.iter().map(|id| NodeId::parse(id).unwrap()).collect(),
        }
    }

    #[test]
    fn a_lease_request_reads_back_from_its_query_string() {
        for asked in [ask("qwen2.5-coder", &[]), ask("m_1", &["gpu-node-1"]), ask("m", &["a.b", "c-d", "e_f"])] {
            let read = read(&asked.query_string()).unwrap().unwrap();
            assert_eq!((read.model, read.avoid), (asked.model, asked.avoid));
        }
    }

    #[test]
    fn a_query_without_a_model_asks_nothing_and_a_bad_node_id_is_refused() {
        assert!(read("").unwrap().is_none());
        assert!(read("model=m&avoid=ok,Not%20an%20id").unwrap_err().contains("avoid"));
        assert!(read("model=Bad%20Name").is_err());
    }
}
