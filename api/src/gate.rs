//! Who may call models: every `/v1` and per-model route passes here first.
//!
//! A server with a management plane requires an API key
//! (`Authorization: Bearer <key>` or `x-api-key: <key>`) with the
//! `inference` scope, and a key sees and calls only its project's models.
//! Open mode (`serve --open`, for a demo on one machine) lets requests
//! without a valid key call every model until the first inference key
//! exists; a valid key is scoped to its project even then.

use std::sync::Arc;

use std::collections::HashSet;

use axum::http::{HeaderMap, header};

use greenthread_core::rate_limit::RateStatus;
use greenthread_core::{ModelName, ModelSpec, ProjectName};

use greenthread_protocol::error::ApiError;
use greenthread_store::auth::{AuthError, KeyService, Principal, Scope};
use greenthread_store::keys;
use greenthread_store::ratelimit;

/// The inference side's credentials check.
pub struct Gate {
    pub keys: Arc<KeyService>,
    pub open_mode: bool,
    /// The fixed window per-key rate limits are counted in.
    pub rate_window: std::time::Duration,
}

/// Whose request it is.
#[derive(Debug, Clone)]
pub enum Who {
    /// No key needed: a server without a management plane, or open mode.
    Anyone,
    Key(Principal),
}

/// Who is calling models, and through which door.
#[derive(Debug, Clone)]
pub struct Caller {
    pub who: Who,
    /// Sent to a custom domain: only its service's models exist.
    pub only: Option<Arc<HashSet<ModelName>>>,
    /// Where the request's access line is noted.
    pub access: crate::http::access::AccessSlot,
    /// The request's id (`x-request-id`), passed on to the node and engine
    /// that serve it and written into its usage record.
    pub request_id: Option<String>,
}

impl Caller {
    pub fn anyone() -> Self {
        Self { who: Who::Anyone, only: None, access: crate::http::access::AccessSlot::default(), request_id: None }
    }

    /// The key behind the request, if any.
    pub fn key(&self) -> Option<&Principal> {
        match &self.who {
            Who::Key(p) => Some(p),
            Who::Anyone => None,
        }
    }

    /// May see and call the model of `spec`.
    pub fn may_call(&self, spec: &ModelSpec) -> bool {
        let by_key = match &self.who {
            Who::Anyone => true,
            Who::Key(p) => p.can_call(&spec.project),
        };
        by_key && self.only.as_ref().is_none_or(|models| models.contains(&spec.name))
    }
}

impl Gate {
    /// Who is behind `token`, if they may call models, and a limited key's
    /// standing after counting this request.
    ///
    /// # Errors
    /// 401 without an acceptable key (outside open mode), 403 without the
    /// `inference` scope, 429 past the key's rate limits.
    pub async fn check(&self, token: Option<&str>) -> Result<(Who, Option<RateStatus>), ApiError> {
        let refused = match token {
            None => ApiError::Unauthenticated(
                "You didn't provide an API key. Send it as `Authorization: Bearer <key>` or `x-api-key: <key>`.".into(),
            ),
            Some(token) => match self.keys.authenticate(token).await {
                Ok(p) if p.has(Scope::Inference) => {
                    let standing = if p.limits.any() { Some(self.admit(&p).await?) } else { None };
                    return Ok((Who::Key(p), standing));
                }
                Ok(_) => return Err(ApiError::PermissionDenied("This API key has no `inference` scope.".into())),
                Err(AuthError::Store(e)) => return Err(ApiError::Internal(e.to_string())),
                Err(e) => ApiError::Unauthenticated(format!("Incorrect API key provided: {e}.")),
            },
        };
        // SDKs always send some key (`api_key="unused"`): while open mode
        // holds, a missing or unknown key is no reason to refuse.
        if self.open_mode {
            match keys::any_live_inference_key(self.keys.store().db()).await {
                Ok(false) => return Ok((Who::Anyone, None)),
                Ok(true) => {}
                Err(e) => return Err(ApiError::Internal(e.to_string())),
            }
        }
        Err(refused)
    }
}

/// Who reads the operator's views (`/status`, `/metrics`).
#[derive(Debug, Clone)]
pub enum Viewer {
    /// No management plane, or open mode: the whole view.
    Anyone,
    /// A valid key of any scope: what its project may see (all of it for an admin key).
    Key(Principal),
}

impl Viewer {
    /// Sees every project and the nodes.
    pub fn sees_everything(&self) -> bool {
        match self {
            Self::Anyone => true,
            Self::Key(p) => p.is_admin(),
        }
    }

    /// Sees the models of `project`.
    pub fn sees_project(&self, project: &ProjectName) -> bool {
        match self {
            Self::Anyone => true,
            Self::Key(p) => p.is_admin() || p.project == *project,
        }
    }
}

impl Gate {
    /// The viewer behind `token`: a valid key, else anyone while open mode
    /// holds (no inference key exists yet).
    ///
    /// # Errors
    /// [`ApiError::Unauthenticated`] without a valid key, outside open mode.
    pub async fn viewer(&self, token: Option<&str>) -> Result<Viewer, ApiError> {
        let refused = match token {
            None => ApiError::Unauthenticated("This view needs an API key: send `Authorization: Bearer <key>`.".into()),
            Some(token) => match self.keys.authenticate(token).await {
                Ok(p) => return Ok(Viewer::Key(p)),
                Err(AuthError::Store(e)) => return Err(ApiError::Internal(e.to_string())),
                Err(e) => ApiError::Unauthenticated(format!("Incorrect API key provided: {e}.")),
            },
        };
        // Open mode ends for these views when it ends for the models: with the first inference key.
        if self.open_mode
            && !keys::any_live_inference_key(self.keys.store().db())
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
        {
            return Ok(Viewer::Anyone);
        }
        Err(refused)
    }

    /// Counts the request against its key's limits; refuses it past them.
    async fn admit(&self, p: &Principal) -> Result<RateStatus, ApiError> {
        let (start, reset) = ratelimit::window_of(self.keys.store().now(), self.rate_window);
        let (requests, tokens) = ratelimit::count_request(self.keys.store().db(), p.key_id, start)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        match ratelimit::decide(p.limits, self.rate_window, requests, tokens, reset) {
            (true, status) => Ok(status),
            (false, status) => Err(ApiError::RateLimited(status)),
        }
    }
}

/// The bearer token of `Authorization`, or `x-api-key`'s value.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}
