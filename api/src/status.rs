//! `GET /status` (JSON: every model's state and where its weights are; every
//! tier's budget and use) and `GET /metrics` (Prometheus text).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use greenthread_core::NodeControl;
use serde::Serialize;

use crate::http::error::{ApiError, ApiResult};
use crate::http::state::AppState;
use crate::openai::now_unix_seconds;

#[derive(Debug, Serialize)]
pub struct StatusBody {
    pub tiers: Vec<TierBody>,
    pub models: Vec<ModelBody>,
}

#[derive(Debug, Serialize)]
pub struct TierBody {
    pub tier: &'static str,
    pub budget_bytes: u64,
    pub used_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct ModelBody {
    pub name: String,
    pub project: String,
    /// `absent`, `fetching`, `staged`, `waking`, `serving`, `draining`, `sleeping` or `failed`.
    pub state: &'static str,
    /// The fastest tier holding its weights: `device` while awake.
    pub tier: &'static str,
    pub replicas: u32,
    /// Device bytes held now (0 asleep).
    pub device_bytes: u64,
    /// Device bytes it needs awake.
    pub footprint_bytes: u64,
    pub requests_in_flight: u32,
    pub requests_waiting: usize,
    /// Unix seconds of its last request, if it has had one.
    pub last_used: Option<f64>,
    pub last_wake: Option<WakeBody>,
    /// Why it failed, when `state` is `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct WakeBody {
    pub seconds: f64,
    pub from_tier: &'static str,
}

pub async fn status(State(state): State<AppState>) -> ApiResult<Json<StatusBody>> {
    let manager = state.manager.status().await?;
    let now = now_unix_seconds() as f64;
    let mut tiers =
        vec![TierBody { tier: "device", budget_bytes: manager.device_budget, used_bytes: manager.device_used }];
    tiers.extend(state.node.tiers().into_iter().map(|t| TierBody {
        tier: t.tier.as_str(),
        budget_bytes: t.budget,
        used_bytes: t.used,
    }));
    let models = manager
        .models
        .into_iter()
        .map(|m| ModelBody {
            tier: state.node.residency(&m.name).as_str(),
            error: match &m.state {
                greenthread_core::ModelState::Failed { reason } => Some(reason.clone()),
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
            last_wake: m.last_wake.map(|w| WakeBody { seconds: w.duration.as_secs_f64(), from_tier: w.from.as_str() }),
        })
        .collect();
    Ok(Json(StatusBody { tiers, models }))
}

pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let status = state.manager.status().await?;
    let body = state.metrics.render(&status, &state.node.tiers());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body))
}
