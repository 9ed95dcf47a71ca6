//! What every handler shares: the server's services, composed per role.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use greenthread_node_runtime::node::LocalNode;
use greenthread_protocol::error::ApiError;
use greenthread_scheduler::ModelManager;

use crate::catalog::ModelCatalog;
use crate::cluster::Cluster;
use crate::gate::{Caller, Gate, Who};
use crate::http::access::AccessSlot;
use crate::http::limits::Limits;
use crate::http::stamp::RateSlot;
use crate::inference::Inference;
use crate::inference::access::ModelAccess;
use crate::manage::Management;
use crate::metrics::Metrics;
use crate::scheduler_link::{RemoteScheduler, SchedulerLink};
use crate::usage::UsageMeter;

/// Shared state of the HTTP server, in any of its roles: all-in-one,
/// scheduler and gateway of a cluster, or node.
#[derive(Clone)]
pub struct AppState {
    /// The models, how requests reach them and how they are metered.
    pub inference: Inference,
    /// The scheduler, where this process runs one.
    pub manager: Option<ModelManager>,
    /// The scheduler leader of a cluster, where this process is its gateway.
    pub remote: Option<Arc<RemoteScheduler>>,
    /// This process's own node, where it has one.
    pub node: Option<LocalNode>,
    /// Remote nodes, where this process accepts them.
    pub cluster: Option<Arc<Cluster>>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Who may call models; `None`: anyone (no management plane).
    pub gate: Option<Arc<Gate>>,
    /// The management plane, where this server has one.
    pub management: Option<Arc<Management>>,
    /// Off once the server drains (`GET /ready`).
    pub readiness: crate::http::Readiness,
}

impl AppState {
    /// A state that serves `catalog` through `access`, with nothing else yet:
    /// each role adds its scheduler, node, cluster, management plane or metering.
    pub fn new(catalog: Arc<ModelCatalog>, access: Arc<dyn ModelAccess>, limits: Limits) -> Self {
        let inference = Inference::new(catalog, access);
        Self {
            metrics: inference.metrics.clone(),
            inference,
            manager: None,
            remote: None,
            node: None,
            cluster: None,
            limits,
            gate: None,
            management: None,
            readiness: crate::http::Readiness::default(),
        }
    }

    /// The state with `metrics` as its registry, for requests and `/metrics` alike.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.inference.metrics = metrics.clone();
        self.metrics = metrics;
        self
    }

    /// The models this server serves.
    pub fn catalog(&self) -> &Arc<ModelCatalog> {
        &self.inference.catalog
    }

    /// The usage meter, where this server meters.
    pub fn usage_meter(&self) -> Option<&UsageMeter> {
        self.inference.metering.as_ref().map(|m| &m.meter)
    }

    /// The scheduler this process answers for: its own, else the remote leader.
    pub fn scheduler(&self) -> Option<SchedulerLink> {
        self.manager.clone().map(SchedulerLink::Local).or_else(|| self.remote.clone().map(SchedulerLink::Remote))
    }
}

impl FromRef<AppState> for Limits {
    fn from_ref(state: &AppState) -> Self {
        state.limits
    }
}

/// Every model handler takes a [`Caller`]: a request without an acceptable
/// key is refused before its body is read.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let who = match &state.gate {
            None => Who::Anyone,
            Some(gate) => {
                let (who, standing) = gate.check(crate::gate::bearer(&parts.headers)).await?;
                // For the answer's x-ratelimit-* headers (crate::http::stamp).
                if let (Some(standing), Some(slot)) = (standing, parts.extensions.get::<RateSlot>()) {
                    slot.set(standing);
                }
                who
            }
        };
        let host = parts.headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok());
        let route = match (&state.management, host) {
            (Some(m), Some(host)) => m.registry.domain(&crate::domains::request_host(host)),
            _ => None,
        };
        let access = parts.extensions.get::<AccessSlot>().cloned().unwrap_or_default();
        let request_id = parts.extensions.get::<crate::http::stamp::RequestId>().map(|id| id.0.clone());
        if let Who::Key(key) = &who {
            access.note(|n| n.key = Some(key.key_hint.clone()));
        }
        match route {
            None => Ok(Self { who, only: None, access, request_id }),
            Some(r) if r.verified => Ok(Self { who, only: Some(r.models), access, request_id }),
            Some(_) => Err(ApiError::UnknownHost(host.unwrap_or_default().to_owned())),
        }
    }
}
