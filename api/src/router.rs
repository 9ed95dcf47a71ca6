//! Every route of the gateway and of a node's model API, in one place.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::response::Response;
use axum::routing::{get, post};

use crate::anthropic;
use crate::cluster::scheduler_api::SchedulerApi;
use crate::http::{intake, shape};
use crate::openai::{audio, chat, completions, embeddings, models, rerank, responses, speech};
use crate::state::AppState;
use greenthread_protocol::error::ApiError;

/// Every route of the gateway. With a cluster, the scheduler's internal
/// route for node heartbeats joins them, behind the cluster token.
pub fn router(state: AppState) -> Router {
    let body_limit = state.limits.max_request_bytes;
    let mut router = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/status", get(crate::status::status))
        .route("/metrics", get(crate::status::metrics))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{*id}", get(models::retrieve))
        .route("/v1/chat/completions", post(chat::unified))
        .route("/v1/completions", post(completions::unified))
        .route("/v1/embeddings", post(embeddings::unified))
        .route("/v1/rerank", post(rerank::unified))
        .route("/v2/rerank", post(rerank::unified))
        .route("/v1/score", post(rerank::score_unified))
        .route("/v1/audio/transcriptions", post(audio::transcribe_unified))
        .route("/v1/audio/translations", post(audio::translate_unified))
        .route("/v1/audio/speech", post(speech::unified))
        .route("/v1/audio/voices", get(speech::voices_unified).post(speech::voices_forwarded))
        .route("/v1/messages", post(anthropic::unified))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/v1/responses", post(responses::unified))
        .route("/v1/responses/{id}", get(responses::retrieve).delete(responses::delete))
        .route("/v1/responses/{id}/input_items", get(responses::input_items))
        .merge(model_routes())
        .merge(crate::console::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    if let Some(management) = &state.management {
        let graphql = crate::graphql::GraphqlState::new(
            management.clone(),
            state.scheduler(),
            state.catalog().clone(),
            crate::graphql::types::EngineLogs { node: state.node.clone(), cluster: state.cluster.clone() },
            state.metrics.recent.clone(),
            crate::graphql::RateLimiter::standard(),
            body_limit,
        );
        router = router.merge(crate::graphql::router(graphql));
    }
    if let Some(cluster) = &state.cluster {
        let internal = Router::new()
            .route("/internal/v1/nodes/heartbeat", post(crate::cluster::heartbeat))
            .route("/internal/v1/leases", post(crate::cluster::scheduler_api::lease))
            .route("/internal/v1/status", get(crate::cluster::scheduler_api::status))
            .route("/internal/v1/events", get(crate::cluster::scheduler_api::events))
            .route("/internal/v1/sleep", post(crate::cluster::scheduler_api::sleep))
            .layer(axum::middleware::from_fn_with_state(cluster.token.clone(), crate::cluster::token::require_token))
            .with_state(SchedulerApi {
                cluster: cluster.clone(),
                registry: state.management.as_ref().map(|m| m.registry.clone()),
            });
        router = router.merge(internal);
    }
    router
        .layer(axum::middleware::from_fn_with_state(state.limits.body(), intake::read_body))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(http_metrics(&state), crate::http::access::access_log))
        .layer(axum::middleware::from_fn(crate::http::stamp::stamp))
}

/// Counts every exchange in the per-route HTTP metrics.
fn http_metrics(state: &AppState) -> Option<crate::http::access::ExchangeObserver> {
    let metrics = state.metrics.clone();
    Some(Arc::new(move |e: &crate::http::access::Exchange<'_>| {
        metrics.requests.http(e.method, e.route, e.status, e.seconds);
    }))
}

/// The per-model OpenAI routes `/<model>/v1/...`: the gateway's, and all a node serves.
pub fn model_routes() -> Router<AppState> {
    Router::new()
        .route("/{model}/v1/models", get(models::list_one))
        .route("/{model}/v1/models/{*id}", get(models::retrieve_one))
        .route("/{model}/v1/chat/completions", post(chat::per_model))
        .route("/{model}/v1/completions", post(completions::per_model))
        .route("/{model}/v1/embeddings", post(embeddings::per_model))
        .route("/{model}/v1/rerank", post(rerank::per_model))
        .route("/{model}/v1/score", post(rerank::score_per_model))
        .route("/{model}/v1/audio/transcriptions", post(audio::transcribe_per_model))
        .route("/{model}/v1/audio/translations", post(audio::translate_per_model))
        .route("/{model}/v1/audio/speech", post(speech::per_model))
        .route("/{model}/v1/audio/voices", get(speech::voices_per_model))
        .route("/{model}/v1/messages", post(anthropic::per_model))
        .route("/{model}/v1/messages/count_tokens", post(anthropic::count_tokens_per_model))
        .route("/{model}/v1/responses", post(responses::per_model))
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Readiness for new requests: 503 once the server drains, so a load
/// balancer sends them elsewhere while those in flight finish (`/health`,
/// liveness, stays 200).
async fn ready(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    use axum::response::IntoResponse;
    if state.readiness.is_draining() {
        let body = axum::Json(serde_json::json!({"status": "draining"}));
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    } else {
        axum::Json(serde_json::json!({"status": "ready"})).into_response()
    }
}

async fn not_found(method: Method, uri: Uri) -> Response {
    shape::for_path(uri.path(), ApiError::RouteNotFound { method: method.to_string(), path: uri.path().to_owned() })
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    shape::for_path(uri.path(), ApiError::MethodNotAllowed { method: method.to_string(), path: uri.path().to_owned() })
}
