//! Resolving the model a request names, and running the request where the
//! model is: here, or forwarded to the node that serves it.

use std::future::Future;
use std::sync::Arc;

use std::time::Duration;

use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use greenthread_core::{ModelKind, ModelName, NodeId, Task};
use greenthread_node_runtime::ModelInstance;
use greenthread_protocol::error::{ApiError, ApiResult};
use greenthread_scheduler::Lease;
use tracing::Instrument;

use super::Inference;
use super::access::{Hold, Serving, Target};
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
    /// Documents scored against a query (`/v1/rerank`).
    Rerank,
    /// vLLM's `/v1/score`.
    Score,
    /// Speech to text in the spoken language (`/v1/audio/transcriptions`).
    Transcriptions,
    /// Speech to English text (`/v1/audio/translations`).
    Translations,
    /// Text to speech (`/v1/audio/speech`).
    Speech,
    /// The voices of a text-to-speech model (`/v1/audio/voices`; forwarded as a POST).
    Voices,
}

impl Route {
    /// What the route asks a model to do.
    pub fn task(self) -> Task {
        match self {
            Self::Chat | Self::Completions | Self::Messages | Self::CountTokens | Self::Responses => Task::Generate,
            Self::Embeddings => Task::Embed,
            Self::Rerank | Self::Score => Task::Rerank,
            Self::Transcriptions | Self::Translations => Task::Transcribe,
            Self::Speech | Self::Voices => Task::Speak,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Chat => "chat/completions",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
            Self::Messages => "messages",
            Self::CountTokens => "messages/count_tokens",
            Self::Responses => "responses",
            Self::Rerank => "rerank",
            Self::Score => "score",
            Self::Transcriptions => "audio/transcriptions",
            Self::Translations => "audio/translations",
            Self::Speech => "audio/speech",
            Self::Voices => "audio/voices",
        }
    }
}

pub use crate::http::access::WAKE_WAIT_HEADER;

/// A 400 naming the kinds that serve `route`, unless `kind` serves it.
fn refuse_other_tasks(name: &ModelName, kind: ModelKind, route: Route) -> ApiResult<()> {
    if kind.serves(route.task()) {
        return Ok(());
    }
    Err(ApiError::invalid("model", greenthread_core::model_kind::wrong_kind(name.as_str(), kind, route.task())))
}

/// Tells the usage meter and the client how long the request waited for its model.
fn stamp_wake_wait(response: &mut Response, wake: crate::usage::WakeWait) {
    let ms = format!("{:.1}", wake.get().as_secs_f64() * 1000.0);
    if let Ok(value) = HeaderValue::from_str(&ms) {
        response.headers_mut().insert(WAKE_WAIT_HEADER, value);
    }
    response.extensions_mut().insert(wake);
}

/// Attempts per request when nodes fail before responding: the first node
/// and two others.
const MAX_ATTEMPTS: usize = 3;

/// How long a streamed request waits for its model before its answer's
/// head goes out and progress comments begin: a ready model's lease takes
/// well under this.
const PROGRESS_AFTER: Duration = Duration::from_millis(50);
/// How often a waiting stream hears how the wake goes: often enough for
/// proxies with idle timeouts, and for people.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The span of a request's wait for its model: a lease, a wake, a queue.
fn lease_span(model: &ModelName) -> tracing::Span {
    tracing::info_span!("lease", model = %model)
}

/// Whether the validated body asks for a stream (`"stream": true` at its top).
fn streams(route: Route, raw: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Flag {
        #[serde(default)]
        stream: Option<bool>,
    }
    let streaming_route = matches!(route, Route::Chat | Route::Completions | Route::Messages | Route::Responses);
    streaming_route && serde_json::from_slice::<Flag>(raw).is_ok_and(|f| f.stream == Some(true))
}

/// Largest refusal read back from a node to end a waiting stream with.
const MAX_REFUSAL: usize = 64 << 10;

/// A streamed request whose answer's head has gone out before its model was ready.
struct Job {
    name: ModelName,
    route: Route,
    raw: Bytes,
    request_id: Option<String>,
    asked: tokio::time::Instant,
}

/// An error that ends a stream before any of the model's answer, in the
/// stream shape of the request's API (the SDKs raise each of these).
fn stream_error(route: Route, e: &ApiError) -> Bytes {
    let text = match route {
        Route::Messages => {
            let body = greenthread_protocol::anthropic::translate::error_body(e.anthropic_status(), &e.to_string());
            format!("event: error\ndata: {body}\n\n")
        }
        Route::Responses => {
            let body = serde_json::json!({"type": "error", "code": e.code(), "message": e.to_string(), "param": null});
            format!("event: error\ndata: {body}\n\n")
        }
        _ => format!("data: {}\n\n", e.body()),
    };
    Bytes::from(text)
}

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
    /// and the request placed again. A streamed request whose model is not
    /// ready at once gets its answer's head straight away and an SSE comment
    /// on the wake's progress every second until its model answers.
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
        F: FnOnce(Arc<dyn ModelInstance>, Option<Lease>) -> Fut + Send + 'static,
        Fut: Future<Output = ApiResult<Response>> + Send + 'static,
    {
        let asked = tokio::time::Instant::now();
        let name = &entry.spec.name;
        // A declared kind refuses other routes before anything is woken.
        if let Some(kind) = entry.spec.kind {
            refuse_other_tasks(name, kind, route)?;
        }
        let request_id = caller.request_id.as_deref();
        if !streams(route, &raw) {
            let serving = self.access.serve(name, &[], request_id).instrument(lease_span(name)).await?;
            return self.run(name, route, raw, local, request_id, asked, serving).await;
        }
        let first = self.access.serve(name, &[], request_id).instrument(lease_span(name));
        let serving = match tokio::time::timeout(PROGRESS_AFTER, first).await {
            Ok(serving) => serving?,
            Err(_) => {
                let job = Job { name: name.clone(), route, raw, request_id: caller.request_id.clone(), asked };
                return Ok(self.clone().while_waking(job, local));
            }
        };
        self.run(name, route, raw, local, request_id, asked, serving).await
    }

    /// Runs the request on `serving`, placing it again on another node if
    /// that one fails before responding.
    #[allow(clippy::too_many_arguments)]
    async fn run<F, Fut>(
        &self,
        name: &ModelName,
        route: Route,
        raw: Bytes,
        local: F,
        request_id: Option<&str>,
        asked: tokio::time::Instant,
        first: Serving,
    ) -> ApiResult<Response>
    where
        F: FnOnce(Arc<dyn ModelInstance>, Option<Lease>) -> Fut,
        Fut: Future<Output = ApiResult<Response>>,
    {
        let mut local = Some(local);
        let mut avoid: Vec<NodeId> = Vec::new();
        let mut next = Some(first);
        loop {
            let serving = match next.take() {
                Some(serving) => serving,
                None => self.access.serve(name, &avoid, request_id).instrument(lease_span(name)).await?,
            };
            let wake = crate::usage::WakeWait::of(asked.elapsed());
            match serving.target {
                Target::Local(instance) if instance.endpoint().is_some() => {
                    let endpoint =
                        instance.endpoint().ok_or_else(|| ApiError::Internal("the engine went away".into()))?;
                    let lease = serving.hold.and_then(Hold::into_scheduler);
                    let span = tracing::info_span!("engine", engine = %endpoint.base);
                    let mut response =
                        super::engine_proxy::proxy(endpoint, route, raw, lease, request_id).instrument(span).await?;
                    stamp_wake_wait(&mut response, wake);
                    return Ok(response);
                }
                Target::Local(instance) => {
                    refuse_other_tasks(name, instance.info().kind, route)?;
                    let Some(run) = local.take() else {
                        return Err(ApiError::Internal("a local model was offered twice".into()));
                    };
                    let lease = serving.hold.and_then(Hold::into_scheduler);
                    let mut response = run(instance, lease).instrument(tracing::info_span!("generate")).await?;
                    stamp_wake_wait(&mut response, wake);
                    return Ok(response);
                }
                Target::Remote { node, base, link } => {
                    let url = format!("{base}/{name}/v1/{}", route.path());
                    match super::forward::forward(
                        &link.client,
                        &link.token,
                        &url,
                        raw.clone(),
                        serving.hold,
                        request_id,
                    )
                    .instrument(tracing::info_span!("forward", %node))
                    .await
                    {
                        Ok(mut response) => {
                            stamp_wake_wait(&mut response, wake);
                            return Ok(response);
                        }
                        Err(Retry(reason)) => {
                            tracing::warn!(model = %name, %node, %reason, "Node failed before responding; trying another");
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

    /// The answer of a streamed request that waits for its model: SSE
    /// comments on the wake's progress at once and every second, then the
    /// model's own stream — or the reason it could not be had, as an error
    /// event.
    fn while_waking<F, Fut>(self, job: Job, local: F) -> Response
    where
        F: FnOnce(Arc<dyn ModelInstance>, Option<Lease>) -> Fut + Send + 'static,
        Fut: Future<Output = ApiResult<Response>> + Send + 'static,
    {
        let wake = crate::usage::WakeWait::default();
        let waited = wake.clone();
        // The body is polled outside the request's span: its stages name it as their parent.
        let request = tracing::Span::current();
        let body = async_stream::stream! {
            let Job { name, route, raw, request_id, asked } = job;
            let lease = tracing::info_span!(parent: &request, "lease", model = %name);
            let serving = self.access.serve(&name, &[], request_id.as_deref()).instrument(lease);
            tokio::pin!(serving);
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            let serving = loop {
                let ready = tokio::select! {
                    serving = &mut serving => Some(serving),
                    _ = tick.tick() => None,
                };
                if let Some(serving) = ready {
                    break serving;
                }
                let line = match self.access.wake_progress(&name).await {
                    Some(progress) => progress.describe(name.as_str()),
                    None => format!("waiting for {name}"),
                };
                yield Ok::<Bytes, std::convert::Infallible>(Bytes::from(format!(": {line}\n\n")));
            };
            let wait = asked.elapsed();
            waited.set(wait);
            if serving.is_ok() {
                // The wait the head could not carry (the wake-wait header), for the console.
                let ms = wait.as_secs_f64() * 1000.0;
                yield Ok(Bytes::from(format!(": {name} ready after {ms:.1} ms\n\n")));
            }
            let answer = match serving {
                Ok(serving) => {
                    self.run(&name, route, raw, local, request_id.as_deref(), asked, serving).instrument(request.clone()).await
                }
                Err(e) => Err(e),
            };
            match answer {
                Ok(response) if response.status().is_success() => {
                    let mut chunks = response.into_body().into_data_stream();
                    while let Some(Ok(chunk)) = chunks.next().await {
                        yield Ok(chunk);
                    }
                }
                // A refusal from a node or engine: its JSON error, as a stream's error event.
                Ok(refused) => {
                    let status = refused.status().as_u16();
                    let body = axum::body::to_bytes(refused.into_body(), MAX_REFUSAL).await.unwrap_or_default();
                    let message = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v.pointer("/error/message").and_then(|m| m.as_str()).map(str::to_owned))
                        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
                    yield Ok(stream_error(route, &ApiError::Engine { status, message }));
                }
                Err(e) => yield Ok(stream_error(route, &e)),
            }
        };
        let mut response = Response::new(axum::body::Body::from_stream(body));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response.extensions_mut().insert(wake);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_body_asking_for_a_stream_on_a_streaming_route_streams() {
        assert!(streams(Route::Chat, br#"{"model":"m","stream":true}"#));
        assert!(streams(Route::Responses, br#"{"stream":true,"input":"x"}"#));
        assert!(!streams(Route::Chat, br#"{"model":"m","stream":false}"#));
        assert!(!streams(Route::Chat, br#"{"model":"m"}"#));
        assert!(!streams(Route::Embeddings, br#"{"stream":true}"#));
        assert!(!streams(Route::Chat, b"not json"));
    }

    #[test]
    fn a_waiting_stream_ends_with_an_error_event_each_sdk_raises() {
        let e = ApiError::Waking { model: "m".into(), waited_s: 8, retry_after_s: 1 };
        let parse = |bytes: Bytes| {
            let text = String::from_utf8(bytes.to_vec()).unwrap_or_default();
            let (head, data) = text.trim_end().rsplit_once("data: ").unwrap_or_default();
            (head.to_owned(), serde_json::from_str::<serde_json::Value>(data).unwrap_or_default())
        };
        let (head, chat) = parse(stream_error(Route::Chat, &e));
        assert_eq!((head.as_str(), chat["error"]["code"].as_str()), ("", Some("model_waking")));
        let (head, messages) = parse(stream_error(Route::Messages, &e));
        assert_eq!(head, "event: error\n");
        assert_eq!(
            (messages["type"].as_str(), messages["error"]["type"].as_str()),
            (Some("error"), Some("overloaded_error"))
        );
        let (head, responses) = parse(stream_error(Route::Responses, &e));
        assert_eq!(head, "event: error\n");
        assert_eq!((responses["type"].as_str(), responses["code"].as_str()), (Some("error"), Some("model_waking")));
    }
}
