//! `greenthread serve --kubernetes`: a scheduler replica among several.
//! It waits for the leader Lease before it starts (so a follower holds no
//! models and, not listening, is never ready behind the Service), then
//! serves as usual — the models come from the database, and nodes that
//! rejoin report what they hold, so the new leader adopts awake models
//! without a wake — and reconciles `Model` resources. Losing the Lease
//! ends the process: the pod restarts as a follower, as Kubernetes' own
//! controllers do.

use std::sync::Arc;

use futures_util::StreamExt;
use greenthread_kube::leader::{Elector, Timing, mark_role};
use greenthread_kube::reconcile::{Context, error_policy, reconcile};
use greenthread_kube::{MANAGER, ModelResource};
use greenthread_scheduler::ModelManager;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, watcher};
use tokio::sync::watch;

use crate::cli::KubernetesArgs;
use crate::kube_store::DatabaseModels;
use crate::manage::Management;

/// Why Kubernetes mode cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("cannot reach the Kubernetes API (in-cluster config or KUBECONFIG): {0}")]
    Client(#[from] kube::Error),
    #[error("the leader election stopped")]
    Election,
    #[error("cannot listen on {0}: {1}")]
    Listen(std::net::SocketAddr, std::io::Error),
}

/// A replica that leads: its client, and a signal that turns false when the Lease is lost.
pub struct Leadership {
    pub client: kube::Client,
    pub leading: watch::Receiver<bool>,
    /// This replica's pod, when it runs in one (`POD_NAME`).
    pod: Option<String>,
    namespace: String,
    standby: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Stops the standby listener, so the full server can take its address.
    pub async fn stop_standby(&mut self) {
        self.standby.abort();
        let _ = (&mut self.standby).await;
    }

    /// Labels this pod the leader, once the full server listens: from then
    /// on the Service sends requests and joining nodes here.
    ///
    /// # Errors
    /// When the pod cannot be labelled (the Service would have no endpoint).
    pub async fn announce(&self) -> Result<(), KubeError> {
        if let Some(pod) = &self.pod {
            mark_role(&self.client, &self.namespace, pod, true).await?;
            tracing::info!(%pod, "Labelled this pod the leader");
        }
        Ok(())
    }
}

/// Connects, serves `/health` as a standby on `listen` (so the pod is Ready
/// and a rollout can proceed), then waits until this replica holds the Lease.
///
/// # Errors
/// [`KubeError`] when no client can be built, the address is taken, or the election stops.
pub async fn lead(args: &KubernetesArgs, listen: std::net::SocketAddr) -> Result<Leadership, KubeError> {
    // kube, sqlx and object_store each bring a rustls crypto backend: name one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = kube::Client::try_default().await?;
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| std::env::var("HOSTNAME").unwrap_or_else(|_| format!("greenthread-{}", std::process::id())));
    // A pod that restarts after losing the Lease may still carry the leader label.
    let pod = args.identity.clone();
    if let Some(pod) = &pod
        && let Err(e) = mark_role(&client, &args.lease_namespace, pod, false).await
    {
        tracing::warn!(%pod, error = %e, "Cannot label this pod standby");
    }
    let standby = standby(listen).await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &args.lease_namespace);
    let elector = Elector::new(leases, args.lease_name.clone(), identity.clone(), Timing::default());
    let (tx, mut leading) = watch::channel(false);
    tokio::spawn(elector.run(tx));
    tracing::info!(lease = %args.lease_name, %identity, "Standing by");
    leading.wait_for(|l| *l).await.map_err(|_| KubeError::Election)?;
    tracing::info!(lease = %args.lease_name, %identity, "Leading");
    Ok(Leadership { client, leading, pod, namespace: args.lease_namespace.clone(), standby })
}

/// A standby's whole HTTP surface: healthy, and nothing else.
async fn standby(listen: std::net::SocketAddr) -> Result<tokio::task::JoinHandle<()>, KubeError> {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| KubeError::Listen(listen, e))?;
    let router = axum::Router::new()
        .route("/health", axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "standby"})) }))
        .fallback(|| async {
            let message = "this replica is on standby; the leader serves requests";
            let body = serde_json::json!({"error": {"message": message, "type": "unavailable"}});
            (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")], axum::Json(body)).into_response()
        });
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    }))
}

/// Reconciles `Model` resources for as long as the process runs.
pub fn spawn_operator(
    client: kube::Client,
    namespace: Option<&str>,
    mgmt: Arc<Management>,
    manager: Option<ModelManager>,
    refresh: std::time::Duration,
) {
    let models: Api<ModelResource> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let recorder = Recorder::new(client.clone(), Reporter { controller: MANAGER.into(), instance: None });
    let ctx = Arc::new(Context { client, store: Arc::new(DatabaseModels::new(mgmt, manager)), recorder, refresh });
    tokio::spawn(Controller::new(models, watcher::Config::default()).run(reconcile, error_policy, ctx).for_each(
        |result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "Model reconcile");
            }
        },
    ));
}

/// How often the node-runtime pods are listed.
const DISCOVER_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Watches the node-runtime pods: logs each node found with its GPUs, and
/// takes a node out of the scheduler as soon as its pod is gone or not
/// ready (its models are placed again), rather than after missed heartbeats.
pub fn spawn_discovery(client: kube::Client, namespace: String, selector: String, manager: ModelManager) {
    use greenthread_kube::discovery::{list, lost};
    tokio::spawn(async move {
        let mut known = Vec::new();
        loop {
            match list(&client, &namespace, &selector).await {
                Ok(now) => {
                    for n in now.iter().filter(|n| {
                        !known.iter().any(|k: &greenthread_kube::discovery::DiscoveredNode| k.node == n.node)
                    }) {
                        tracing::info!(node = %n.node, pod = %n.pod, gpus = n.gpus, ready = n.ready, "Node-runtime pod found");
                    }
                    for gone in lost(&known, &now) {
                        tracing::warn!(node = %gone, "Node-runtime pod gone or not ready; its models will be placed elsewhere");
                        manager.remove_node(&gone);
                    }
                    known = now;
                }
                Err(e) => tracing::warn!(error = %e, "Cannot list the node-runtime pods"),
            }
            tokio::time::sleep(DISCOVER_EVERY).await;
        }
    });
}

/// Resolves when the Lease is lost.
pub async fn lost(mut leading: watch::Receiver<bool>) {
    let _ = leading.wait_for(|l| !*l).await;
}
