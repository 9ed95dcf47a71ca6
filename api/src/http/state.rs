//! What every handler shares.

use std::sync::Arc;
use std::time::Duration;

use greenthread_node_runtime::node::LocalNode;
use greenthread_scheduler::ModelManager;

use crate::access::ModelAccess;
use crate::catalog::ModelCatalog;
use crate::cluster::Cluster;
use crate::metrics::Metrics;

/// Request limits, each with the reason for its default.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body, in bytes. 8 MiB holds a long conversation (a
    /// 100k-token context is ~400 KB of text) with room for tool schemas.
    pub max_request_bytes: usize,
    /// Most choices (`n`) one request may ask for: each is a sequence in the batch.
    pub max_choices: u32,
    /// Longest a request waits for its model to wake before a 503.
    pub wake_timeout: Duration,
    /// Longest a request body may take to arrive once its headers have.
    pub body_read_timeout: Duration,
}

impl Limits {
    /// What request validation checks against: these limits, and the
    /// builtin engine's grammar compiler (every engine GreenThread runs
    /// enforces grammars through llguidance).
    pub fn rules(&self) -> greenthread_protocol::openai::validate::Rules<'static> {
        greenthread_protocol::openai::validate::Rules {
            max_choices: self.max_choices,
            enforceable: &greenthread_node_runtime::constraint::check,
        }
    }

    /// What a request body may be under these limits.
    pub fn body(&self) -> crate::http::intake::BodyLimits {
        crate::http::intake::BodyLimits { max_bytes: self.max_request_bytes, timeout: self.body_read_timeout }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 8 * 1024 * 1024,
            max_choices: 8,
            wake_timeout: Duration::from_secs(30),
            body_read_timeout: crate::http::intake::BODY_READ_TIMEOUT,
        }
    }
}

/// Shared state of the HTTP server, in any of its roles: all-in-one,
/// scheduler and gateway of a cluster, or node.
#[derive(Clone)]
pub struct AppState {
    pub catalog: Arc<ModelCatalog>,
    pub access: Arc<dyn ModelAccess>,
    /// The scheduler, where this process runs one.
    pub manager: Option<ModelManager>,
    /// The scheduler leader of a cluster, where this process is its gateway.
    pub remote: Option<Arc<crate::scheduler_link::RemoteScheduler>>,
    /// This process's own node, where it has one.
    pub node: Option<LocalNode>,
    /// Remote nodes, where this process accepts them.
    pub cluster: Option<Arc<Cluster>>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Who may call models; `None`: anyone (no management plane).
    pub gate: Option<Arc<crate::http::gate::Gate>>,
    /// The management plane, where this server has one.
    pub management: Option<Arc<crate::manage::Management>>,
    /// Usage metering, where this server meters (a gateway with a database).
    pub usage: Option<crate::usage::UsageMeter>,
}

impl AppState {
    /// A state that serves `catalog` through `access`, with nothing else yet:
    /// each role adds its scheduler, node, cluster or management plane.
    pub fn new(catalog: Arc<ModelCatalog>, access: Arc<dyn ModelAccess>, limits: Limits) -> Self {
        Self {
            catalog,
            access,
            manager: None,
            remote: None,
            node: None,
            cluster: None,
            metrics: Arc::new(Metrics::new()),
            limits,
            gate: None,
            management: None,
            usage: None,
        }
    }

    /// The scheduler this process answers for: its own, else the remote leader.
    pub fn scheduler(&self) -> Option<crate::scheduler_link::SchedulerLink> {
        use crate::scheduler_link::SchedulerLink;
        self.manager.clone().map(SchedulerLink::Local).or_else(|| self.remote.clone().map(SchedulerLink::Remote))
    }
}
