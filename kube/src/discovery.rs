//! Node discovery: the node-runtime pods of the DaemonSet, found through
//! the Kubernetes API by label selector, and each one's GPUs from its
//! node's allocatable `nvidia.com/gpu`. (The runtime reads its GPUs' memory
//! itself when it starts; Kubernetes only knows how many there are.)
//!
//! The pod owns every GPU of its node and models live inside it: the
//! device plugin hands whole GPUs to one container for its lifetime, which
//! does not fit models that come and go every second.

use std::collections::BTreeMap;

use greenthread_core::NodeId;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

/// The extended resource the NVIDIA device plugin advertises.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// One node-runtime pod and the node it runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredNode {
    /// The Kubernetes node's name: the runtime's node id (`--id=$(NODE_NAME)`).
    pub node: NodeId,
    pub pod: String,
    /// The pod's IP, once it has one.
    pub address: Option<String>,
    /// Whether the pod is Ready (its runtime answers `/health`).
    pub ready: bool,
    /// GPUs the node offers (allocatable `nvidia.com/gpu`); 0 on CPU nodes.
    pub gpus: u64,
}

/// Pairs pods with their nodes; pods not yet scheduled are left out, and
/// pods on a node whose name is not a node id (a runtime there cannot start
/// with `--id` set to it) are left out with a warning.
pub fn discover(pods: &[Pod], nodes: &[Node]) -> Vec<DiscoveredNode> {
    let gpus: BTreeMap<String, u64> = nodes.iter().map(|n| (n.name_any(), allocatable_gpus(n))).collect();
    let mut out: Vec<DiscoveredNode> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let node_name = p.spec.as_ref()?.node_name.clone()?;
            let node = match NodeId::parse(&node_name) {
                Ok(node) => node,
                Err(e) => {
                    tracing::warn!(node = %node_name, pod = %p.name_any(), error = %e, "A node-runtime pod on a node whose name is not a node id");
                    return None;
                }
            };
            let status = p.status.as_ref();
            let ready = status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            Some(DiscoveredNode {
                gpus: gpus.get(&node_name).copied().unwrap_or(0),
                node,
                pod: p.name_any(),
                address: status.and_then(|s| s.pod_ip.clone()),
                ready,
            })
        })
        .collect();
    out.sort_by(|a, b| a.node.cmp(&b.node));
    out
}

/// A node's allocatable GPUs (a quantity such as `8`; anything else counts as none).
pub fn allocatable_gpus(node: &Node) -> u64 {
    node.status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get(GPU_RESOURCE))
        .and_then(|q| q.0.parse().ok())
        .unwrap_or(0)
}

/// Nodes that were ready before and are now gone or not ready: the
/// scheduler takes them out at once instead of waiting for missed heartbeats.
pub fn lost(before: &[DiscoveredNode], now: &[DiscoveredNode]) -> Vec<NodeId> {
    before
        .iter()
        .filter(|b| b.ready)
        .filter(|b| !now.iter().any(|n| n.node == b.node && n.ready))
        .map(|b| b.node.clone())
        .collect()
}

/// The node-runtime pods in `namespace` matching `selector`, with their nodes' GPUs.
///
/// # Errors
/// When the API server cannot be asked.
pub async fn list(client: &kube::Client, namespace: &str, selector: &str) -> Result<Vec<DiscoveredNode>, kube::Error> {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace).list(&ListParams::default().labels(selector)).await?;
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?;
    Ok(discover(&pods.items, &nodes.items))
}
