//! The OpenAI-compatible API: chat completions, completions, models.

pub mod chat;
mod choices;
pub mod completions;
pub mod models;
pub mod types;
pub mod validate;

use std::sync::Arc;

pub use choices::now_unix as now_unix_seconds;
use greenthread_node_runtime::ModelInstance;
use greenthread_scheduler::Lease;

use crate::catalog::CatalogEntry;
use crate::http::error::{ApiError, ApiResult};
use crate::http::state::AppState;

/// The model a request body's `"model"` names (name or alias).
fn model_for_body(state: &AppState, id: Option<&str>) -> ApiResult<Arc<CatalogEntry>> {
    let id = id.ok_or_else(|| ApiError::invalid("model", "Missing required parameter: 'model'."))?;
    state.catalog.resolve(id).ok_or_else(|| ApiError::ModelNotFound(id.to_owned()))
}

/// The model of a per-model URL `/<name>/v1/...`. The URL decides; the body's
/// `"model"` is not consulted there, so one base URL per model works with any SDK.
fn model_for_path(state: &AppState, name: &str) -> ApiResult<Arc<CatalogEntry>> {
    state.catalog.by_name(name).ok_or_else(|| ApiError::ModelNotFound(name.to_owned()))
}

/// A model ready to generate, and the lease that keeps it awake while the
/// request runs (a streamed response holds it until its last chunk).
pub struct Serving {
    pub lease: Lease,
    pub instance: Arc<dyn ModelInstance>,
}

/// Waits for `entry`'s model to be serving: at once if awake, after a wake
/// (shared with every other request waiting for it) if asleep.
///
/// # Errors
/// A 503 with `Retry-After` when the wake outlasts the wake timeout, or the
/// reason the model cannot be served.
async fn serving(state: &AppState, entry: &CatalogEntry) -> ApiResult<Serving> {
    let lease = state.manager.acquire(&entry.spec.name).await?;
    let instance = state
        .node
        .instance(&entry.spec.name)
        .ok_or_else(|| ApiError::Internal(format!("model {} is serving but has no instance", entry.spec.name)))?;
    Ok(Serving { lease, instance })
}
