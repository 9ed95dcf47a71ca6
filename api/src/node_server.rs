//! `greenthread node`: a node process. It serves its models' OpenAI
//! endpoints and an internal API (stage, wake, sleep) to the scheduler, all
//! behind the cluster token, and reports to the scheduler every second.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use greenthread_core::{ModelName, ModelSpec, NodeControl, NodeError, NodeId};
use greenthread_node_runtime::node::LocalNode;

use crate::catalog::ModelCatalog;
use crate::cluster::token::{ClusterToken, require_token};
use crate::cluster::wire::{Heartbeat, NodeErrorBody, SleepRequest, SleepResponse};
use crate::cluster::{HEARTBEAT_INTERVAL, MAX_LOG_LINES, http_client};
use crate::http::limits::Limits;
use crate::inference::access::NodeLocal;
use crate::manage::ArtifactPolicy;
use crate::state::AppState;

/// What the node's internal handlers share.
#[derive(Clone)]
pub struct NodeState {
    pub node: LocalNode,
    pub catalog: Arc<ModelCatalog>,
    /// Where the local artifacts it stages may lie.
    pub artifacts: Arc<ArtifactPolicy>,
}

/// The node's answer to a failed operation.
struct NodeFailure(NodeError);

impl IntoResponse for NodeFailure {
    fn into_response(self) -> Response {
        let status = match self.0 {
            NodeError::UnknownModel(_) => StatusCode::NOT_FOUND,
            NodeError::Artifact(_) => StatusCode::UNPROCESSABLE_ENTITY,
            NodeError::Engine(_) | NodeError::Unreachable(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(NodeErrorBody { error: self.0 })).into_response()
    }
}

fn model_name(raw: &str) -> Result<ModelName, NodeFailure> {
    ModelName::parse(raw).map_err(|_| NodeFailure(NodeError::UnknownModel(raw.to_owned())))
}

async fn stage(
    State(s): State<NodeState>,
    Path(name): Path<String>,
    Json(spec): Json<ModelSpec>,
) -> Result<Json<greenthread_core::StageReport>, NodeFailure> {
    let name = model_name(&name)?;
    if spec.name != name {
        return Err(NodeFailure(NodeError::Engine(format!("the spec is for {}, not {name}", spec.name))));
    }
    // The scheduler is trusted with the token, not with this machine's files.
    s.artifacts.check(&spec.artifact).map_err(|reason| NodeFailure(NodeError::Artifact(reason)))?;
    s.catalog.put(spec.clone(), greenthread_protocol::ids::now_unix());
    s.node.stage(&spec).await.map(Json).map_err(NodeFailure)
}

async fn wake(
    State(s): State<NodeState>,
    Path(name): Path<String>,
) -> Result<Json<greenthread_core::WakeReport>, NodeFailure> {
    let name = model_name(&name)?;
    s.node.wake(&name).await.map(Json).map_err(NodeFailure)
}

async fn forget(
    State(s): State<NodeState>,
    Path(name): Path<String>,
    Json(spec): Json<ModelSpec>,
) -> Result<Json<serde_json::Value>, NodeFailure> {
    let name = model_name(&name)?;
    if spec.name != name {
        return Err(NodeFailure(NodeError::Engine(format!("the spec is for {}, not {name}", spec.name))));
    }
    s.node.forget(&spec).await.map_err(NodeFailure)?;
    if s.node.model(&name).is_none() {
        s.catalog.remove(&name);
    }
    Ok(Json(serde_json::json!({"forgotten": name.as_str()})))
}

async fn sleep(
    State(s): State<NodeState>,
    Path(name): Path<String>,
    Json(req): Json<SleepRequest>,
) -> Result<Json<SleepResponse>, NodeFailure> {
    let name = model_name(&name)?;
    s.node.sleep(&name, req.warm_tier).await.map(|tier| Json(SleepResponse { tier })).map_err(NodeFailure)
}

/// How many lines of an engine's output to return.
#[derive(serde::Deserialize)]
struct LogsQuery {
    #[serde(default = "default_lines")]
    last: u32,
}

fn default_lines() -> u32 {
    100
}

/// The last lines the model's external engine wrote on this node.
async fn logs(
    State(s): State<NodeState>,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<LogsQuery>,
) -> Result<Json<Vec<String>>, NodeFailure> {
    let name = model_name(&name)?;
    let lines = s.node.engine_logs(&name, q.last.min(MAX_LOG_LINES) as usize);
    lines.map(Json).ok_or(NodeFailure(NodeError::UnknownModel(name.to_string())))
}

/// The node's routes: the internal API and the per-model OpenAI endpoints,
/// behind the cluster token; `/health` open. Models whose local artifact
/// is outside `artifacts` are refused.
pub fn router(node: LocalNode, token: ClusterToken, limits: Limits, artifacts: ArtifactPolicy) -> Router {
    let catalog = Arc::new(ModelCatalog::default());
    let internal = Router::new()
        .route("/internal/v1/models/{name}/stage", post(stage))
        .route("/internal/v1/models/{name}/wake", post(wake))
        .route("/internal/v1/models/{name}/sleep", post(sleep))
        .route("/internal/v1/models/{name}/forget", post(forget))
        .route("/internal/v1/models/{name}/logs", get(logs))
        .with_state(NodeState { node: node.clone(), catalog: catalog.clone(), artifacts: Arc::new(artifacts) });
    let api_state =
        AppState { node: Some(node.clone()), ..AppState::new(catalog, Arc::new(NodeLocal { node }), limits) };
    let models = crate::router::model_routes().with_state(api_state);
    Router::new()
        .merge(internal)
        .merge(models)
        .layer(axum::middleware::from_fn_with_state(limits.body(), crate::http::intake::read_body))
        .layer(axum::middleware::from_fn_with_state(token, require_token))
        .layer(axum::extract::DefaultBodyLimit::max(limits.max_request_bytes))
        .route("/health", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        // The access line and span of each request, under the id its gateway sent.
        .layer(axum::middleware::from_fn_with_state(None, crate::http::access::access_log))
        .layer(axum::middleware::from_fn(crate::http::stamp::stamp))
}

/// Reports to the scheduler at `control_plane` every heartbeat interval,
/// for as long as the process runs. A scheduler that is down is retried.
pub fn spawn_heartbeat(
    node: LocalNode,
    id: NodeId,
    advertise: String,
    control_plane: String,
    device_budget: u64,
    token: ClusterToken,
) -> tokio::task::JoinHandle<()> {
    // Tells the scheduler apart a restarted node process from the same one.
    let instance = format!("{}-{}", std::process::id(), rand::random::<u64>());
    tokio::spawn(async move {
        let client = http_client();
        let url = format!("{}/internal/v1/nodes/heartbeat", control_plane.trim_end_matches('/'));
        let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
        let mut failing = false;
        let mut exits = node.engine_exits();
        // Engines that exited on their own since the last heartbeat that got through.
        let mut exited: Vec<(ModelName, String)> = Vec::new();
        loop {
            tick.tick().await;
            while let Ok(exit) = exits.try_recv() {
                exited.push((exit.model, exit.reason));
            }
            let hb = Heartbeat {
                id: id.clone(),
                url: advertise.clone(),
                device_budget,
                tiers: node.tiers(),
                holdings: node.holdings(),
                instance: instance.clone(),
                engine_exits: exited.clone(),
            };
            let sent = client
                .post(&url)
                .header(reqwest::header::AUTHORIZATION, token.bearer())
                .json(&hb)
                .timeout(HEARTBEAT_INTERVAL * 2)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status);
            if sent.is_ok() {
                exited.clear();
            }
            match sent {
                Ok(_) if failing => {
                    tracing::info!("Reaching the scheduler again");
                    failing = false;
                }
                Ok(_) => {}
                Err(e) if !failing => {
                    tracing::warn!(error = %e, "Cannot reach the scheduler; retrying every heartbeat");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    })
}
