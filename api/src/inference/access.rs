//! How a request reaches a model: a lease from the scheduler and then the
//! model in this process or the node that serves it, or — on a node — the
//! model in this process if it is awake.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use greenthread_core::{ModelName, NodeId, WakeProgress};
use greenthread_node_runtime::ModelInstance;
use greenthread_node_runtime::node::LocalNode;
use greenthread_scheduler::{Lease, ModelManager};

use crate::cluster::Cluster;
use crate::cluster::NodeLink;
use crate::engine_errors::from_acquire;
use greenthread_protocol::error::{ApiError, ApiResult};

/// Where a request's model runs.
pub enum Target {
    /// In this process.
    Local(Arc<dyn ModelInstance>),
    /// On another node, reached at `base` (`http://host:port`) through `link`.
    Remote { node: NodeId, base: String, link: NodeLink },
}

/// What keeps a replica counted busy until the response ends: the
/// scheduler's lease in this process, or one held at a remote scheduler.
pub enum Hold {
    Scheduler(Lease),
    Remote(crate::scheduler_link::RemoteLease),
}

impl Hold {
    /// The lease of a scheduler in this process, which local models need.
    pub fn into_scheduler(self) -> Option<Lease> {
        match self {
            Self::Scheduler(lease) => Some(lease),
            Self::Remote(_) => None,
        }
    }
}

/// A model ready for one request, and what keeps it so until the response ends.
pub struct Serving {
    pub target: Target,
    /// The replica counts the request in flight while this lives.
    pub hold: Option<Hold>,
}

/// Gives requests their model.
pub trait ModelAccess: Send + Sync {
    /// The model `model`, not on the nodes in `avoid`, for the request
    /// `request_id` (which a remote scheduler logs beside the lease).
    fn serve<'a>(
        &'a self,
        model: &'a ModelName,
        avoid: &'a [NodeId],
        request_id: Option<&'a str>,
    ) -> Pin<Box<dyn Future<Output = ApiResult<Serving>> + Send + 'a>>;

    /// How far `model`'s wake has come, where this access can tell.
    fn wake_progress<'a>(
        &'a self,
        model: &'a ModelName,
    ) -> Pin<Box<dyn Future<Output = Option<WakeProgress>> + Send + 'a>> {
        let _ = model;
        Box::pin(async { None })
    }
}

/// `model`'s wake progress in a scheduler's status.
pub fn progress_in(status: &greenthread_scheduler::ManagerStatus, model: &ModelName) -> Option<WakeProgress> {
    status.models.iter().find(|m| m.name == *model).and_then(|m| m.wake_progress)
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
        _request_id: Option<&'a str>,
    ) -> Pin<Box<dyn Future<Output = ApiResult<Serving>> + Send + 'a>> {
        Box::pin(async move {
            let lease = self.manager.acquire_avoiding(model, avoid).await.map_err(from_acquire)?;
            let node = lease.node().clone();
            if let Some((id, local)) = &self.local
                && *id == node
            {
                let instance = local
                    .instance(model)
                    .ok_or_else(|| ApiError::Internal(format!("model {model} is serving but has no instance")))?;
                return Ok(Serving { target: Target::Local(instance), hold: Some(Hold::Scheduler(lease)) });
            }
            let cluster = self.cluster.as_ref();
            let base = cluster
                .and_then(|c| c.address_of(&node))
                .ok_or_else(|| ApiError::Unavailable(format!("node {node} is no longer known")))?;
            let link = cluster
                .map(|c| c.link())
                .ok_or_else(|| ApiError::Internal("a remote node without a cluster".into()))?;
            Ok(Serving { target: Target::Remote { node, base, link }, hold: Some(Hold::Scheduler(lease)) })
        })
    }

    fn wake_progress<'a>(
        &'a self,
        model: &'a ModelName,
    ) -> Pin<Box<dyn Future<Output = Option<WakeProgress>> + Send + 'a>> {
        Box::pin(async move { progress_in(&self.manager.status().await.ok()?, model) })
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
        _request_id: Option<&'a str>,
    ) -> Pin<Box<dyn Future<Output = ApiResult<Serving>> + Send + 'a>> {
        Box::pin(async move {
            match self.node.model(model) {
                Some(m) if m.is_awake() => Ok(Serving { target: Target::Local(m), hold: None }),
                _ => Err(ApiError::Unavailable(format!("model {model} is not awake on this node"))),
            }
        })
    }
}
