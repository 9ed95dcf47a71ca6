//! `GET /v1/models` and `GET /v1/models/{id}`.

use axum::Json;
use axum::extract::{Path, State};

use crate::catalog::CatalogEntry;
use crate::gate::Caller;
use crate::state::AppState;
use greenthread_protocol::error::ApiResult;
use greenthread_protocol::openai::types::{ModelList, ModelObject};

fn object(m: &CatalogEntry) -> ModelObject {
    ModelObject { id: m.spec.name.to_string(), object: "model", created: m.created, owned_by: "greenthread" }
}

/// The models the caller may call.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Json<ModelList> {
    let data = state.catalog().all().iter().filter(|m| caller.may_call(&m.spec)).map(|m| object(m)).collect();
    Json(ModelList { object: "list", data })
}

/// `id` may be a name or an alias (aliases can contain `/`).
pub async fn retrieve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ModelObject>> {
    Ok(Json(object(state.inference.model_for_body(&caller, Some(&id))?.as_ref())))
}

/// Under a per-model prefix the list holds that model alone.
pub async fn list_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ModelList>> {
    let model = state.inference.model_for_path(&caller, &name)?;
    Ok(Json(ModelList { object: "list", data: vec![object(&model)] }))
}

pub async fn retrieve_one(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<ModelObject>> {
    let model = state.inference.model_for_path(&caller, &name)?;
    let other = state.inference.model_for_body(&caller, Some(&id))?;
    if other.spec.name != model.spec.name {
        return Err(greenthread_protocol::error::ApiError::ModelNotFound(id));
    }
    Ok(Json(object(&model)))
}
