//! The OpenAI-compatible API: chat completions, completions, models.

pub mod chat;
mod choices;
pub mod completions;
pub mod models;
pub mod types;
pub mod validate;

use std::sync::Arc;

pub use choices::now_unix as now_unix_seconds;

use crate::http::error::{ApiError, ApiResult};
use crate::http::state::AppState;
use crate::registry::ServedModel;

/// The model a request body's `"model"` names (name or alias).
fn model_for_body(state: &AppState, id: Option<&str>) -> ApiResult<Arc<ServedModel>> {
    let id = id.ok_or_else(|| ApiError::invalid("model", "Missing required parameter: 'model'."))?;
    state.models.resolve(id).ok_or_else(|| ApiError::ModelNotFound(id.to_owned()))
}

/// The model of a per-model URL `/<name>/v1/...`. The URL decides; the body's
/// `"model"` is not consulted there, so one base URL per model works with any SDK.
fn model_for_path(state: &AppState, name: &str) -> ApiResult<Arc<ServedModel>> {
    state.models.by_name(name).ok_or_else(|| ApiError::ModelNotFound(name.to_owned()))
}
