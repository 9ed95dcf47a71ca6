//! `GET /v1/models` and `GET /v1/models/{id}`.

use axum::Json;
use axum::extract::{Path, State};

use super::types::{ModelList, ModelObject};
use super::{model_for_body, model_for_path};
use crate::catalog::CatalogEntry;
use crate::http::error::ApiResult;
use crate::http::state::AppState;

fn object(m: &CatalogEntry) -> ModelObject {
    ModelObject { id: m.spec.name.to_string(), object: "model", created: m.created, owned_by: "greenthread" }
}

pub async fn list(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList { object: "list", data: state.catalog.all().iter().map(|m| object(m)).collect() })
}

/// `id` may be a name or an alias (aliases can contain `/`).
pub async fn retrieve(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<ModelObject>> {
    Ok(Json(object(model_for_body(&state, Some(&id))?.as_ref())))
}

/// Under a per-model prefix the list holds that model alone.
pub async fn list_one(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<ModelList>> {
    let model = model_for_path(&state, &name)?;
    Ok(Json(ModelList { object: "list", data: vec![object(&model)] }))
}

pub async fn retrieve_one(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<ModelObject>> {
    let model = model_for_path(&state, &name)?;
    let other = model_for_body(&state, Some(&id))?;
    if other.spec.name != model.spec.name {
        return Err(crate::http::error::ApiError::ModelNotFound(id));
    }
    Ok(Json(object(&model)))
}
