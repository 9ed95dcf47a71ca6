//! Stored responses of the Responses API, where this server has a database:
//! each kept for the caller's project (a key's project; the default project
//! for requests without a key) until the retention ends. A response is kept
//! as its answer passes through — the whole body, or the final
//! `response.completed` event of a stream, stored before the client sees it,
//! so a continuation sent the moment an answer arrives finds it.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use greenthread_protocol::error::{ApiError, ApiResult};
use greenthread_protocol::sse::{SseItem, SseParser};
use greenthread_store::Store;
use greenthread_store::responses::{NewResponse, StoredResponse};
use serde_json::Value;
use uuid::Uuid;

use crate::gate::Caller;

/// How long responses are kept unless configured otherwise (OpenAI's default).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// How often expired responses are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Largest whole answer read to be kept.
const MAX_KEPT_BYTES: usize = 32 << 20;

/// The responses store of a server with a database.
#[derive(Clone)]
pub struct ResponseArchive {
    store: Store,
    retention: Duration,
    /// Whose responses requests without a key make (open mode).
    keyless_project: Uuid,
}

impl ResponseArchive {
    /// Keeps responses in `store` for `retention`; keyless callers' in `keyless_project`.
    pub fn new(store: Store, retention: Duration, keyless_project: Uuid) -> Self {
        Self { store, retention, keyless_project }
    }

    /// Deletes expired responses now and then, for as long as the server runs.
    pub fn spawn_pruning(&self) {
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PRUNE_EVERY);
            loop {
                tick.tick().await;
                match store.prune_responses().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(deleted = n, "Expired responses deleted"),
                    Err(e) => tracing::warn!(error = %e, "Cannot delete expired responses"),
                }
            }
        });
    }

    fn owner(&self, caller: &Caller) -> (Uuid, Option<Uuid>) {
        caller.key().map_or((self.keyless_project, None), |p| (p.project_id, Some(p.key_id)))
    }

    /// Response `id` as its caller may see it.
    ///
    /// # Errors
    /// 404 when it does not exist, expired or belongs to another project.
    pub async fn get(&self, caller: &Caller, id: &str) -> ApiResult<StoredResponse> {
        let (project, _) = self.owner(caller);
        self.store
            .response(project, id)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .ok_or_else(|| ApiError::NotFound { kind: "response", id: id.to_owned() })
    }

    /// The conversation a continuation of response `id` starts from: its
    /// input items, then its output.
    ///
    /// # Errors
    /// 404 naming `previous_response_id` when the response cannot be had.
    pub async fn conversation(&self, caller: &Caller, id: &str) -> ApiResult<Vec<Value>> {
        let stored = self.get(caller, id).await.map_err(|e| match e {
            ApiError::NotFound { .. } => ApiError::invalid(
                "previous_response_id",
                format!("Previous response with id '{}' not found.", greenthread_protocol::error::shown(id)),
            ),
            other => other,
        })?;
        let mut items = stored.input;
        items.extend(stored.body["output"].as_array().cloned().unwrap_or_default());
        Ok(items)
    }

    /// Deletes response `id`.
    ///
    /// # Errors
    /// 404 when the caller has no such response.
    pub async fn delete(&self, caller: &Caller, id: &str) -> ApiResult<()> {
        let (project, _) = self.owner(caller);
        match self.store.delete_response(project, id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ApiError::NotFound { kind: "response", id: id.to_owned() }),
            Err(e) => Err(ApiError::Internal(e.to_string())),
        }
    }

    async fn save(&self, caller: &Caller, model: &str, input: Vec<Value>, body: &Value) {
        let Some(id) = body["id"].as_str() else { return };
        let (project_id, key_id) = self.owner(caller);
        let response =
            NewResponse { id: id.to_owned(), project_id, key_id, model: model.to_owned(), input, body: body.clone() };
        if let Err(e) = self.store.save_response(response, self.retention).await {
            tracing::warn!(error = %e, response = id, "Cannot keep a response");
        }
    }

    /// `response`, kept as it passes: the successful answer to a request whose
    /// conversation is `input`. A whole answer is kept before it is sent.
    pub async fn keeping(self, caller: Caller, model: String, input: Vec<Value>, response: Response) -> Response {
        if !response.status().is_success() {
            return response;
        }
        let streaming = response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let (parts, body) = response.into_parts();
        if !streaming {
            let bytes = match axum::body::to_bytes(body, MAX_KEPT_BYTES).await {
                Ok(bytes) => bytes,
                Err(e) => return axum::response::IntoResponse::into_response(ApiError::Internal(e.to_string())),
            };
            if let Ok(body) = serde_json::from_slice::<Value>(&bytes) {
                self.save(&caller, &model, input, &body).await;
            }
            return Response::from_parts(parts, Body::from(bytes));
        }
        let mut chunks = body.into_data_stream();
        let kept = async_stream::stream! {
            let mut input = Some(input);
            let mut parser = SseParser::new();
            while let Some(chunk) = chunks.next().await {
                let chunk: Bytes = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        yield Err(e);
                        break;
                    }
                };
                for item in parser.feed(&chunk) {
                    if let Some(body) = final_response(&item)
                        && let Some(conversation) = input.take()
                    {
                        self.save(&caller, &model, conversation, &body).await;
                    }
                }
                yield Ok(chunk);
            }
        };
        Response::from_parts(parts, Body::from_stream(kept))
    }
}

/// The response object of a stream's last event, if `item` is it.
fn final_response(item: &SseItem) -> Option<Value> {
    let SseItem::Event { data, .. } = item else { return None };
    let event: Value = serde_json::from_str(data).ok()?;
    matches!(event["type"].as_str(), Some("response.completed" | "response.incomplete"))
        .then(|| event["response"].clone())
}
