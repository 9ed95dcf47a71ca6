//! GreenThread across processes: the scheduler side of membership (nodes
//! register and heartbeat; one that falls silent is lost and its models
//! placed again), the scheduler's internal API, and what crosses the wire.

pub mod remote_node;
pub mod scheduler_api;
pub mod token;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use greenthread_core::{ModelName, NodeId};
use greenthread_scheduler::{ModelManager, NodeHandle};
use tokio::time::Instant;

use self::remote_node::RemoteNode;
use self::token::ClusterToken;
use self::wire::Heartbeat;
use greenthread_protocol::error::{ApiError, ApiResult};

/// How often a node reports.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Silence after which a node is lost: three missed heartbeats, so one
/// slow report does not take a healthy node out.
pub const LOST_AFTER: Duration = Duration::from_secs(3);

struct Member {
    remote: Arc<RemoteNode>,
    instance: String,
    last_seen: Instant,
}

/// How requests reach nodes: the cluster's HTTP client and token.
#[derive(Clone)]
pub struct NodeLink {
    pub client: reqwest::Client,
    pub token: ClusterToken,
}

/// Most lines of an engine's output one request for them returns.
pub const MAX_LOG_LINES: u32 = 2000;

/// The remote nodes a scheduler knows.
pub struct Cluster {
    pub token: ClusterToken,
    pub client: reqwest::Client,
    manager: ModelManager,
    members: Mutex<HashMap<NodeId, Member>>,
}

impl Cluster {
    /// The cluster of remote nodes that join `manager`.
    pub fn new(token: ClusterToken, manager: ModelManager) -> Self {
        Self { token, client: http_client(), manager, members: Mutex::new(HashMap::new()) }
    }

    fn members(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Member>> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How this scheduler's requests reach its nodes.
    pub fn link(&self) -> NodeLink {
        NodeLink { client: self.client.clone(), token: self.token.clone() }
    }

    /// The manager this cluster feeds.
    pub fn manager(&self) -> &ModelManager {
        &self.manager
    }

    /// Where the scheduler reaches `node`.
    pub fn address_of(&self, node: &NodeId) -> Option<String> {
        self.members().get(node).map(|m| m.remote.url().to_owned())
    }

    /// The last `last` lines `model`'s external engine wrote on a node that
    /// holds a replica of it; empty when none has anything to say.
    pub async fn engine_logs(&self, model: &ModelName, last: u32) -> Vec<String> {
        let Ok(status) = self.manager.status().await else { return Vec::new() };
        let nodes: Vec<NodeId> = status
            .models
            .iter()
            .filter(|m| &m.name == model)
            .flat_map(|m| m.replica_list.iter().map(|r| r.node.clone()))
            .collect();
        for node in nodes {
            let Some(base) = self.address_of(&node) else { continue };
            let url = format!("{base}/internal/v1/models/{model}/logs?last={last}");
            let answer = self.client.get(&url).header(reqwest::header::AUTHORIZATION, self.token.bearer()).send().await;
            let lines = match answer.and_then(reqwest::Response::error_for_status) {
                Ok(a) => a.json::<Vec<String>>().await.unwrap_or_default(),
                Err(_) => continue,
            };
            if !lines.is_empty() {
                return lines;
            }
        }
        Vec::new()
    }

    /// Registers a node or keeps it alive.
    ///
    /// # Errors
    /// A 400 when the node's URL is not an `http(s)` URL.
    pub fn heartbeat(&self, hb: Heartbeat) -> ApiResult<()> {
        let url = hb.url.trim_end_matches('/').to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ApiError::invalid("url", "a node's url must be an http(s) URL"));
        }
        for (model, reason) in &hb.engine_exits {
            self.manager.replica_failed(model, &hb.id, reason.clone());
        }
        let mut members = self.members();
        let known = members.get_mut(&hb.id).filter(|m| m.instance == hb.instance && m.remote.url() == url);
        if let Some(member) = known {
            member.last_seen = Instant::now();
            member.remote.set_tiers(hb.tiers);
            return Ok(());
        }
        let remote = Arc::new(RemoteNode::new(url, self.token.clone(), self.client.clone()));
        remote.set_tiers(hb.tiers.clone());
        tracing::info!(node = %hb.id, url = remote.url(), "Node registered");
        members
            .insert(hb.id.clone(), Member { remote: remote.clone(), instance: hb.instance, last_seen: Instant::now() });
        drop(members);
        self.manager.add_node(NodeHandle {
            id: hb.id,
            control: remote,
            device_budget: hb.device_budget,
            holdings: hb.holdings,
        });
        Ok(())
    }

    /// Takes out nodes that have been silent for [`LOST_AFTER`].
    pub fn reap_silent(&self) {
        let now = Instant::now();
        let lost: Vec<NodeId> = self
            .members()
            .iter()
            .filter(|(_, m)| now.duration_since(m.last_seen) > LOST_AFTER)
            .map(|(id, _)| id.clone())
            .collect();
        for id in lost {
            self.members().remove(&id);
            tracing::warn!(node = %id, "Node missed its heartbeats; taking it out");
            self.manager.remove_node(&id);
        }
    }

    /// Runs [`Self::reap_silent`] every heartbeat interval until the process ends.
    pub fn spawn_reaper(self: &Arc<Self>) {
        let cluster = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
            loop {
                tick.tick().await;
                cluster.reap_silent();
            }
        });
    }
}

/// `POST /internal/v1/nodes/heartbeat`.
pub async fn heartbeat(
    State(cluster): State<Arc<Cluster>>,
    Json(hb): Json<Heartbeat>,
) -> ApiResult<Json<serde_json::Value>> {
    cluster.heartbeat(hb)?;
    Ok(Json(serde_json::json!({"ok": true})))
}

/// The HTTP client for calls inside the cluster: connections fail fast, so
/// a dead node is noticed in a second, not a minute.
pub fn http_client() -> reqwest::Client {
    client_builder().build().unwrap_or_default()
}

/// [`http_client`] speaking HTTP/2 from the first byte (cleartext, prior
/// knowledge): every request a stream of one kept-alive connection. A
/// gateway's leases from the scheduler travel on it.
pub fn multiplexed_client() -> reqwest::Client {
    client_builder()
        .http2_prior_knowledge()
        // A peer that vanished without closing the connection is noticed by
        // its unanswered pings, as the TCP keep-alive notices it for HTTP/1.1.
        .http2_keep_alive_interval(Duration::from_secs(15))
        .http2_keep_alive_timeout(Duration::from_secs(10))
        .http2_keep_alive_while_idle(true)
        .build()
        .unwrap_or_default()
}

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .pool_idle_timeout(Duration::from_secs(30))
        // Long-lived streams (leases, events, tokens) to a peer that vanished
        // without closing its connections fail within a minute, not hours.
        .tcp_keepalive(Duration::from_secs(15))
}
