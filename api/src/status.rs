//! `GET /status` (JSON: every model's state, replicas and where its weights
//! are; every node's and tier's budget and use) and `GET /metrics`
//! (Prometheus text). Outside open mode both need a key: `/status` shows a
//! key the models of its project (an admin key everything, nodes and tiers
//! included), `/metrics` is for admin keys (Prometheus sends one as a bearer
//! token). A server without a management plane shows both to anyone.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use greenthread_core::{ModelState, Tier, TierUsage};
use greenthread_scheduler::ManagerStatus;
use serde::Serialize;

use crate::gate::Viewer;
use crate::state::AppState;
use greenthread_protocol::error::{ApiError, ApiResult};
use greenthread_protocol::ids::now_unix;

use crate::engine_errors::from_acquire;

#[derive(Debug, Serialize)]
pub struct StatusBody {
    /// Budgets and use summed over the nodes (for viewers who see the nodes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiers: Option<Vec<TierBody>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<NodeBody>>,
    pub models: Vec<ModelBody>,
}

/// Who is looking, from the request's key.
async fn viewer(state: &AppState, headers: &HeaderMap) -> ApiResult<Viewer> {
    match &state.gate {
        None => Ok(Viewer::Anyone),
        Some(gate) => gate.viewer(crate::gate::bearer(headers)).await,
    }
}

#[derive(Debug, Serialize)]
pub struct TierBody {
    pub tier: &'static str,
    pub budget_bytes: u64,
    pub used_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct NodeBody {
    pub id: String,
    pub tiers: Vec<TierBody>,
}

#[derive(Debug, Serialize)]
pub struct ModelBody {
    pub name: String,
    pub project: String,
    /// `absent`, `fetching`, `staged`, `waking`, `serving`, `draining`, `sleeping` or `failed`
    /// (the most advanced among its replicas).
    pub state: &'static str,
    /// The fastest tier holding its weights anywhere: `device` while awake.
    pub tier: &'static str,
    /// Replicas holding device memory.
    pub replicas: u32,
    /// Device bytes held now, all replicas (0 asleep).
    pub device_bytes: u64,
    /// Device bytes one replica needs awake.
    pub footprint_bytes: u64,
    pub requests_in_flight: u32,
    pub requests_waiting: usize,
    /// Unix seconds of its last request, if it has had one.
    pub last_used: Option<f64>,
    pub last_wake: Option<WakeBody>,
    /// How far its wake has come, while it wakes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wake_progress: Option<WakeProgressBody>,
    pub replica_list: Vec<ReplicaBody>,
    /// Why it failed, when `state` is `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ReplicaBody {
    pub node: String,
    pub state: &'static str,
    pub device_bytes: u64,
    pub requests_in_flight: u32,
}

#[derive(Debug, Serialize)]
pub struct WakeProgressBody {
    pub from_tier: &'static str,
    pub elapsed_seconds: f64,
    /// Estimated from the last wake from the same tier, when there was one.
    pub percent: Option<u8>,
    /// The line a waiting stream is sent (`waking qwen from disk, 40%`).
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct WakeBody {
    pub seconds: f64,
    pub from_tier: &'static str,
}

fn tier_body(t: &TierUsage) -> TierBody {
    TierBody { tier: t.tier.as_str(), budget_bytes: t.budget, used_bytes: t.used }
}

/// Every node's tiers: the device as the scheduler counts it, RAM and disk
/// as each node reports them (through the scheduler, wherever it runs).
fn node_tiers(manager: &ManagerStatus) -> Vec<(String, Vec<TierUsage>)> {
    manager
        .nodes
        .iter()
        .map(|n| {
            let mut tiers = vec![TierUsage { tier: Tier::Device, budget: n.device_budget, used: n.device_used }];
            tiers.extend(n.tiers.iter().cloned());
            (n.id.to_string(), tiers)
        })
        .collect()
}

fn totals(nodes: &[(String, Vec<TierUsage>)]) -> Vec<TierBody> {
    [Tier::Device, Tier::Ram, Tier::Disk]
        .into_iter()
        .map(|tier| {
            let of_tier = nodes.iter().flat_map(|(_, ts)| ts.iter().filter(move |t| t.tier == tier));
            let (budget, used) = of_tier.fold((0, 0), |(b, u), t| (b + t.budget, u + t.used));
            TierBody { tier: tier.as_str(), budget_bytes: budget, used_bytes: used }
        })
        .collect()
}

pub async fn status(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Json<StatusBody>> {
    let scheduler =
        state.scheduler().ok_or_else(|| ApiError::RouteNotFound { method: "GET".into(), path: "/status".into() })?;
    let viewer = viewer(&state, &headers).await?;
    let status = scheduler.status().await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let now = now_unix() as f64;
    let nodes = node_tiers(&status);
    let models = status
        .models
        .into_iter()
        .filter(|m| viewer.sees_project(&m.project))
        .map(|m| {
            let tier = if m.replicas > 0 {
                Tier::Device
            } else {
                m.replica_list
                    .iter()
                    .filter_map(|r| match r.state {
                        ModelState::Staged { tier } | ModelState::Sleeping { tier } => Some(tier),
                        _ => None,
                    })
                    .min()
                    .unwrap_or(Tier::Object)
            };
            ModelBody {
                tier: tier.as_str(),
                error: match &m.state {
                    ModelState::Failed { reason } => Some(reason.clone()),
                    _ => None,
                },
                name: m.name.to_string(),
                project: m.project.to_string(),
                state: m.state.name(),
                replicas: m.replicas,
                device_bytes: m.device_bytes,
                footprint_bytes: m.footprint_bytes,
                requests_in_flight: m.in_flight,
                requests_waiting: m.waiting,
                last_used: m.idle_for.map(|idle| now - idle.as_secs_f64()),
                last_wake: m
                    .last_wake
                    .map(|w| WakeBody { seconds: w.duration.as_secs_f64(), from_tier: w.from.as_str() }),
                wake_progress: m.wake_progress.map(|p| WakeProgressBody {
                    from_tier: p.from.as_str(),
                    elapsed_seconds: p.elapsed.as_secs_f64(),
                    percent: p.percent(),
                    message: p.describe(m.name.as_str()),
                }),
                replica_list: m
                    .replica_list
                    .iter()
                    .map(|r| ReplicaBody {
                        node: r.node.to_string(),
                        state: r.state.name(),
                        device_bytes: r.device_bytes,
                        requests_in_flight: r.in_flight,
                    })
                    .collect(),
            }
        })
        .collect();
    let everything = viewer.sees_everything();
    Ok(Json(StatusBody {
        tiers: everything.then(|| totals(&nodes)),
        nodes: everything.then(|| {
            nodes
                .iter()
                .map(|(id, ts)| NodeBody { id: id.clone(), tiers: ts.iter().map(tier_body).collect() })
                .collect()
        }),
        models,
    }))
}

/// Each model's requests in hand: those holding a replica's lease run (up
/// to its sequences), the rest wait for a sequence or a wake.
fn in_hand(state: &AppState, status: Option<&ManagerStatus>) -> Vec<crate::metrics::InHand> {
    state
        .inference
        .catalog
        .all()
        .iter()
        .map(|entry| {
            let spec = &entry.spec;
            let admitted = state.inference.admissions.in_flight(&spec.name);
            // Without a scheduler here, an admitted request past the wait is running.
            let leased = match status {
                Some(status) => {
                    status.models.iter().find(|m| m.name == spec.name).map_or(0, |m| u64::from(m.in_flight))
                }
                None => admitted,
            };
            let admission = spec.scaling.admission(&spec.engine);
            let slots = u64::from(admission.concurrency) * u64::from(admission.replicas);
            let running = leased.min(slots).min(admitted.max(leased));
            crate::metrics::InHand {
                model: spec.name.to_string(),
                running,
                waiting: admitted.saturating_sub(running),
                engine: state.node.as_ref().and_then(|node| node.model(&spec.name)).and_then(|m| m.load()),
            }
        })
        .collect()
}

/// `/metrics`: the request metrics of this server, and where it runs the
/// scheduler, the models' lifecycle and the tiers (a gateway's lifecycle
/// metrics are its scheduler's).
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    if !viewer(&state, &headers).await?.sees_everything() {
        return Err(ApiError::PermissionDenied("/metrics needs an admin key.".into()));
    }
    let text = |body: String| ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body);
    let Some(manager) = state.manager.as_ref() else {
        let in_hand = in_hand(&state, None);
        return Ok(text(state.metrics.render(None, &in_hand)));
    };
    let status = manager.status().await.map_err(from_acquire)?;
    let nodes = node_tiers(&status);
    let warm: Vec<TierUsage> = totals(&nodes)
        .into_iter()
        .filter(|t| t.tier != "device")
        .map(|t| TierUsage {
            tier: if t.tier == "ram" { Tier::Ram } else { Tier::Disk },
            budget: t.budget_bytes,
            used: t.used_bytes,
        })
        .collect();
    let in_hand = in_hand(&state, Some(&status));
    Ok(text(state.metrics.render(Some((&status, &warm)), &in_hand)))
}
