//! How a request reaches a model: a lease from the scheduler and then the
//! model in this process or the node that serves it, or — on a node — the
//! model in this process if it is awake.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use greenthread_core::{ModelName, NodeId};
use greenthread_node_runtime::ModelInstance;
use greenthread_node_runtime::node::LocalNode;
use greenthread_scheduler::{Lease, ModelManager};

use crate::cluster::Cluster;
use crate::http::error::{ApiError, ApiResult};

/// Where a request's model runs.
pub enum Target {
    /// In this process.
    Local(Arc<dyn ModelInstance>),
    /// On another node, reached at `base` (`http://host:port`).
    Remote { node: NodeId, base: String },
}

/// A model ready for one request, and what keeps it so until the response ends.
pub struct Serving {
    pub target: Target,
    /// The scheduler's lease: the replica counts the request in flight while it lives.
    pub lease: Option<Lease>,
}

/// Gives requests their model.
pub trait ModelAccess: Send + Sync {
    /// The model `model`, not on the nodes in `avoid`.
    fn serve<'a>(
        &'a self,
        model: &'a ModelName,
        avoid: &'a [NodeId],
    ) -> Pin<Box<dyn Future<Output = ApiResult<Serving>> + Send + 'a>>;
}

/// The gateway's access: a lease from the scheduler, then this process's
/// node or a remote one.
pub struct Scheduled {
    pub manager: ModelManager,
    /// This process's own node, if it has one.
    pub local: Option<(NodeId, LocalNode)>,
    /// Remote nodes, if this process accepts them.
    pub cluster: Option<Arc<Cluster>>,
}

impl ModelAccess for Scheduled {
    fn serve<'a>(
        &'a self,
        model: &'a ModelName,
        avoid: &'a [NodeId],
    ) -> Pin<Box<dyn Future<Output = ApiResult<Serving>> + Send + 'a>> {
        Box::pin(async move {
            let lease = self.manager.acquire_avoiding(model, avoid).await?;
            let node = lease.node().clone();
            if let Some((id, local)) = &self.local
                && *id == node
            {
                let instance = local
                    .instance(model)
                    .ok_or_else(|| ApiError::Internal(format!("model {model} is serving but has no instance")))?;
                return Ok(Serving { target: Target::Local(instance), lease: Some(lease) });
            }
            let base = self
                .cluster
                .as_ref()
                .and_then(|c| c.address_of(&node))
                .ok_or_else(|| ApiError::Unavailable(format!("node {node} is no longer known")))?;
            Ok(Serving { target: Target::Remote { node, base }, lease: Some(lease) })
        })
    }
}

/// A node's access: its own model, if awake. The scheduler that sent the
/// request has woken it here; if it is not awake, that scheduler retries
/// elsewhere on the 503.
pub struct NodeLocal {
    pub node: LocalNode,
}

impl ModelAccess for NodeLocal {
    fn serve<'a>(
        &'a self,
        model: &'a ModelName,
        _avoid: &'a [NodeId],
    ) -> Pin<Box<dyn Future<Output = ApiResult<Serving>> + Send + 'a>> {
        Box::pin(async move {
            match self.node.model(model) {
                Some(m) if m.is_awake() => Ok(Serving { target: Target::Local(m), lease: None }),
                _ => Err(ApiError::Unavailable(format!("model {model} is not awake on this node"))),
            }
        })
    }
}
