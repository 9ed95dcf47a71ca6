//! A node in another process, driven over HTTP: the [`NodeControl`] a
//! scheduler uses for it.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use greenthread_core::{
    ModelName, ModelSpec, NodeControl, NodeError, NodeFuture, StageReport, Tier, TierUsage, WakeReport, WarmTier,
};
use serde::de::DeserializeOwned;

use super::token::ClusterToken;
use super::wire::{NodeErrorBody, SleepRequest, SleepResponse};

/// Longest a stage or wake may take over the network: a fetch of a large
/// artifact from object storage takes minutes.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A remote node.
pub struct RemoteNode {
    url: String,
    token: ClusterToken,
    client: reqwest::Client,
    /// Its tiers as of its last heartbeat.
    tiers: Mutex<Vec<TierUsage>>,
}

impl RemoteNode {
    pub fn new(url: String, token: ClusterToken, client: reqwest::Client) -> Self {
        Self { url, token, client, tiers: Mutex::new(Vec::new()) }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn set_tiers(&self, tiers: Vec<TierUsage>) {
        *self.tiers.lock().unwrap_or_else(PoisonError::into_inner) = tiers;
    }

    async fn call<T: DeserializeOwned>(&self, path: String, body: serde_json::Value) -> Result<T, NodeError> {
        let url = format!("{}/internal/v1/models/{path}", self.url);
        let response = self
            .client
            .post(&url)
            .header(reqwest::header::AUTHORIZATION, self.token.bearer())
            .json(&body)
            .timeout(OPERATION_TIMEOUT)
            .send()
            .await
            .map_err(|e| NodeError::Unreachable(format!("{}: {e}", self.url)))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| NodeError::Unreachable(format!("{}: {e}", self.url)))?;
        if status.is_success() {
            serde_json::from_slice(&bytes).map_err(|e| NodeError::Engine(format!("bad answer from {}: {e}", self.url)))
        } else {
            Err(serde_json::from_slice::<NodeErrorBody>(&bytes).map(|b| b.error).unwrap_or_else(|_| {
                NodeError::Engine(format!("{} answered {status}: {}", self.url, String::from_utf8_lossy(&bytes)))
            }))
        }
    }
}

impl NodeControl for RemoteNode {
    fn stage<'a>(&'a self, spec: &'a ModelSpec) -> NodeFuture<'a, StageReport> {
        Box::pin(async move {
            let body = serde_json::to_value(spec).map_err(|e| NodeError::Engine(e.to_string()))?;
            self.call(format!("{}/stage", spec.name), body).await
        })
    }

    fn wake<'a>(&'a self, model: &'a ModelName) -> NodeFuture<'a, WakeReport> {
        Box::pin(self.call(format!("{model}/wake"), serde_json::json!({})))
    }

    fn sleep<'a>(&'a self, model: &'a ModelName, warm: WarmTier) -> NodeFuture<'a, Tier> {
        Box::pin(async move {
            let body =
                serde_json::to_value(SleepRequest { warm_tier: warm }).map_err(|e| NodeError::Engine(e.to_string()))?;
            let answer: SleepResponse = self.call(format!("{model}/sleep"), body).await?;
            Ok(answer.tier)
        })
    }

    fn forget<'a>(&'a self, spec: &'a ModelSpec) -> NodeFuture<'a, ()> {
        Box::pin(async move {
            let body = serde_json::to_value(spec).map_err(|e| NodeError::Engine(e.to_string()))?;
            let _: serde_json::Value = self.call(format!("{}/forget", spec.name), body).await?;
            Ok(())
        })
    }

    fn tiers(&self) -> Vec<TierUsage> {
        self.tiers.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}
