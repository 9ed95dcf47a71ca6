//! Resolving the model a request names, and running the request where the
//! model is: here, or forwarded to the node that serves it.

use std::future::Future;
use std::sync::Arc;

use axum::response::Response;
use bytes::Bytes;
use greenthread_core::NodeId;
use greenthread_node_runtime::ModelInstance;
use greenthread_protocol::error::{ApiError, ApiResult};
use greenthread_scheduler::Lease;

use super::Inference;
use super::access::{Hold, Target};
use super::forward::Retry;
use crate::catalog::CatalogEntry;
use crate::gate::Caller;

/// The OpenAI routes a gateway forwards to nodes.
#[derive(Debug, Clone, Copy)]
pub enum Route {
    Chat,
    Completions,
    Embeddings,
    /// Anthropic's Messages, forwarded as the client sent them: the node
    /// builds the answer from its own generation.
    Messages,
    /// Anthropic's token counting, forwarded as the client sent it.
    CountTokens,
    /// The Responses API, forwarded with its conversation expanded (the
    /// gateway holds the stored responses); the node builds the answer.
    Responses,
}

impl Route {
    fn path(self) -> &'static str {
        match self {
            Self::Chat => "chat/completions",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
            Self::Messages => "messages",
            Self::CountTokens => "messages/count_tokens",
            Self::Responses => "responses",
        }
    }
}

pub use crate::http::access::WAKE_WAIT_HEADER;

/// Tells the usage meter and the client how long the request waited for its model.
fn stamp_wake_wait(response: &mut Response, wake: crate::usage::WakeWait) {
    let ms = format!("{:.1}", wake.0.as_secs_f64() * 1000.0);
    if let Ok(value) = axum::http::HeaderValue::from_str(&ms) {
        response.headers_mut().insert(WAKE_WAIT_HEADER, value);
    }
    response.extensions_mut().insert(wake);
}

/// Attempts per request when nodes fail before responding: the first node
/// and two others.
const MAX_ATTEMPTS: usize = 3;

impl Inference {
    /// The model a request body's `"model"` names (name or alias).
    /// A model of another project is not found, exactly like one that does not exist.
    pub(crate) fn model_for_body(&self, caller: &Caller, id: Option<&str>) -> ApiResult<Arc<CatalogEntry>> {
        let id = id.ok_or_else(|| ApiError::invalid("model", "Missing required parameter: 'model'."))?;
        let entry = self
            .catalog
            .resolve(id)
            .filter(|m| caller.may_call(&m.spec))
            .ok_or_else(|| ApiError::ModelNotFound(id.to_owned()))?;
        caller.access.note(|n| n.model = Some(entry.spec.name.to_string()));
        Ok(entry)
    }

    /// The model of a per-model URL `/<name>/v1/...`. The URL decides; the body's
    /// `"model"` is not consulted there, so one base URL per model works with any SDK.
    pub(crate) fn model_for_path(&self, caller: &Caller, name: &str) -> ApiResult<Arc<CatalogEntry>> {
        let entry = self
            .catalog
            .by_name(name)
            .filter(|m| caller.may_call(&m.spec))
            .ok_or_else(|| ApiError::ModelNotFound(name.to_owned()))?;
        caller.access.note(|n| n.model = Some(entry.spec.name.to_string()));
        Ok(entry)
    }

    /// Runs a validated request where its model is: `local` on a model in this
    /// process, or the request's own bytes forwarded to the node serving it.
    /// A node that fails before any of the response has gone out is avoided
    /// and the request placed again.
    ///
    /// # Errors
    /// The reason the model cannot be had (503 with `Retry-After` past the wake
    /// timeout), or what `local` returns.
    pub(crate) async fn dispatch<F, Fut>(
        &self,
        caller: &Caller,
        entry: &CatalogEntry,
        route: Route,
        raw: Bytes,
        local: F,
    ) -> ApiResult<Response>
    where
        F: FnOnce(Arc<dyn ModelInstance>, Option<Lease>) -> Fut,
        Fut: Future<Output = ApiResult<Response>>,
    {
        let mut local = Some(local);
        let mut avoid: Vec<NodeId> = Vec::new();
        let asked = tokio::time::Instant::now();
        loop {
            let serving = self.access.serve(&entry.spec.name, &avoid).await?;
            let wake = crate::usage::WakeWait(asked.elapsed());
            match serving.target {
                Target::Local(instance) if instance.endpoint().is_some() => {
                    let endpoint =
                        instance.endpoint().ok_or_else(|| ApiError::Internal("the engine went away".into()))?;
                    let lease = serving.hold.and_then(Hold::into_scheduler);
                    let mut response =
                        super::engine_proxy::proxy(endpoint, route, raw, lease, caller.request_id.as_deref()).await?;
                    stamp_wake_wait(&mut response, wake);
                    return Ok(response);
                }
                Target::Local(instance) => {
                    let Some(run) = local.take() else {
                        return Err(ApiError::Internal("a local model was offered twice".into()));
                    };
                    let mut response = run(instance, serving.hold.and_then(Hold::into_scheduler)).await?;
                    stamp_wake_wait(&mut response, wake);
                    return Ok(response);
                }
                Target::Remote { node, base, link } => {
                    let url = format!("{base}/{}/v1/{}", entry.spec.name, route.path());
                    let request_id = caller.request_id.as_deref();
                    match super::forward::forward(
                        &link.client,
                        &link.token,
                        &url,
                        raw.clone(),
                        serving.hold,
                        request_id,
                    )
                    .await
                    {
                        Ok(mut response) => {
                            stamp_wake_wait(&mut response, wake);
                            return Ok(response);
                        }
                        Err(Retry(reason)) => {
                            tracing::warn!(model = %entry.spec.name, %node, %reason, "Node failed before responding; trying another");
                            avoid.push(node);
                            if avoid.len() >= MAX_ATTEMPTS {
                                return Err(ApiError::Unavailable(reason));
                            }
                        }
                    }
                }
            }
        }
    }
}
