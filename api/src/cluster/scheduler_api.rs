//! The scheduler's internal API for gateways in other processes (all behind
//! the cluster token): leases, the manager's status, its state changes as
//! a stream, and an operator's sleep.
//!
//! Leases: a gateway asks the scheduler for
//! a replica, sends the request straight to the node (tokens never pass
//! through the scheduler), and holds the lease by keeping the answer's
//! stream open: the first line names the node, then a keep-alive line
//! follows every [`KEEPALIVE`]. When the gateway's response ends it closes
//! the stream and the replica's request count drops; a gateway that dies
//! mid-request releases its leases when the next keep-alive finds the
//! connection gone, so a crash never pins a model awake.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRef, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use greenthread_scheduler::{AcquireError, ManagerStatus, SleepOutcome};

use super::Cluster;
use super::wire::{LeaseGrant, LeaseQuery, LeaseRefused, LeaseRequest, SleepModel};

/// What the scheduler's internal API serves from: the cluster, and the
/// registry where the scheduler has a database.
#[derive(Clone)]
pub struct SchedulerApi {
    pub cluster: Arc<Cluster>,
    /// Read again when a gateway asks for a model created since the last
    /// periodic read (none without a database).
    pub registry: Option<Arc<crate::manage::Registry>>,
}

impl FromRef<SchedulerApi> for Arc<Cluster> {
    fn from_ref(api: &SchedulerApi) -> Self {
        api.cluster.clone()
    }
}

/// How often a held lease's stream carries a byte, which is how a dead
/// gateway is noticed.
pub const KEEPALIVE: Duration = Duration::from_secs(1);

/// The scheduler's refusal, as gateways read it: 404 for an unknown
/// model, 409 otherwise (never 503, which means "no leader here, retry").
pub struct Refused(AcquireError);

impl From<AcquireError> for Refused {
    fn from(e: AcquireError) -> Self {
        Self(e)
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let status = match self.0 {
            AcquireError::UnknownModel(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::CONFLICT,
        };
        (status, Json(LeaseRefused { error: self.0 })).into_response()
    }
}

/// `POST /internal/v1/leases`: waits for a replica (waking the model if
/// need be, within the scheduler's wake timeout) and holds it while the
/// answer's stream is open.
pub async fn lease(
    State(api): State<SchedulerApi>,
    query: Result<Query<LeaseQuery>, QueryRejection>,
    body: Bytes,
) -> Response {
    let asked = match query.map_err(|e| e.body_text()).and_then(|Query(q)| q.request()) {
        Ok(Some(ask)) => Ok(ask),
        // A gateway of an earlier version asks in a JSON body.
        Ok(None) => serde_json::from_slice::<LeaseRequest>(&body).map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match asked {
        Ok(ask) => grant(&api, ask).await.unwrap_or_else(IntoResponse::into_response),
        Err(reason) => {
            let body = serde_json::json!({"error": format!("not a lease request: {reason}")});
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
    }
}

async fn grant(api: &SchedulerApi, ask: LeaseRequest) -> Result<Response, Refused> {
    let cluster = &api.cluster;
    let manager = cluster.manager();
    let lease = match (manager.acquire_avoiding(&ask.model, &ask.avoid).await, &api.registry) {
        // The gateway knows the model, so it is in the database: created
        // since this scheduler last read it. Read it now rather than make the
        // client wait for the periodic read.
        (Err(AcquireError::UnknownModel(_)), Some(registry)) => {
            if let Err(e) = registry.sync().await {
                tracing::warn!(error = %e, "Cannot read the models for a gateway's lease");
            }
            manager.acquire_avoiding(&ask.model, &ask.avoid).await?
        }
        (other, _) => other?,
    };
    let node = lease.node().clone();
    let Some(base) = cluster.address_of(&node) else {
        // The scheduler's own node serves only requests that reach this
        // process; a scheduler fronted by gateways runs with --no-local-node.
        let reason = format!("node {node} cannot be reached from a gateway");
        return Err(Refused(AcquireError::Failed { model: ask.model.to_string(), reason }));
    };
    let mut first = serde_json::to_vec(&LeaseGrant { node, base }).unwrap_or_default();
    first.push(b'\n');
    let stream = async_stream::stream! {
        let _lease = lease;
        yield Ok::<Bytes, Infallible>(Bytes::from(first));
        loop {
            tokio::time::sleep(KEEPALIVE).await;
            yield Ok(Bytes::from_static(b"\n"));
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(stream)).into_response())
}

/// `GET /internal/v1/status`: the manager's view of every model and node.
pub async fn status(State(cluster): State<Arc<Cluster>>) -> Result<Json<ManagerStatus>, Refused> {
    Ok(Json(cluster.manager().status().await?))
}

/// `POST /internal/v1/sleep`: an operator's sleep of one model.
pub async fn sleep(
    State(cluster): State<Arc<Cluster>>,
    Json(ask): Json<SleepModel>,
) -> Result<Json<SleepOutcome>, Refused> {
    Ok(Json(cluster.manager().sleep(&ask.model).await?))
}

/// `GET /internal/v1/events`: every state change from now on, one JSON
/// object per line, with a keep-alive line every [`KEEPALIVE`] (an empty
/// line) so a dead subscriber is noticed. A subscriber that falls behind
/// skips what it missed, as one in this process would.
pub async fn events(State(cluster): State<Arc<Cluster>>) -> Result<Response, Refused> {
    use tokio::sync::broadcast::error::RecvError;
    let mut changes = cluster.manager().subscribe();
    let stream = async_stream::stream! {
        loop {
            match tokio::time::timeout(KEEPALIVE, changes.recv()).await {
                Ok(Ok(event)) => {
                    let mut line = serde_json::to_vec(&event).unwrap_or_default();
                    line.push(b'\n');
                    yield Ok::<Bytes, Infallible>(Bytes::from(line));
                }
                Ok(Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) => break,
                Err(_) => yield Ok(Bytes::from_static(b"\n")),
            }
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(stream)).into_response())
}
