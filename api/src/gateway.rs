//! `greenthread gateway`: the API tier of a cluster, as many replicas as
//! the traffic needs. Each serves the OpenAI and Anthropic APIs, GraphQL
//! and the console from the shared database (keys, rate limits, usage and
//! audit are all there), leases each request's replica from the scheduler
//! and sends the request straight to the node, so tokens flow node →
//! gateway → client without passing through the scheduler.
//!
//! A gateway keeps answering while the scheduler's leader changes: a
//! request that finds no leader waits for one (within the wake timeout,
//! like a request waiting for a wake) instead of failing. GraphQL and
//! `/status` read the leader's state through [`RemoteScheduler`].

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use greenthread_core::{ModelName, ModelSpec, NodeId};

use crate::catalog::ModelCatalog;
use crate::cli::GatewayArgs;
use crate::cluster::NodeLink;
use crate::cluster::token::ClusterToken;
use crate::http::limits::Limits;
use crate::inference::access::{Hold, ModelAccess, Serving, Target};
use crate::scheduler_link::{LinkError, RemoteScheduler};
use crate::serve::{AdminBootstrap, ManagedOptions, ServeError, attach_management, txt_resolver};
use crate::state::AppState;
use greenthread_protocol::error::{ApiError, ApiResult};
use greenthread_store::{Store, SystemClock, state};

/// Requests get their replica from a scheduler leader over HTTP.
pub struct Delegated {
    pub scheduler: Arc<RemoteScheduler>,
}

impl ModelAccess for Delegated {
    fn serve<'a>(
        &'a self,
        model: &'a ModelName,
        avoid: &'a [NodeId],
        request_id: Option<&'a str>,
    ) -> Pin<Box<dyn Future<Output = ApiResult<Serving>> + Send + 'a>> {
        Box::pin(async move {
            match self.scheduler.lease(model, avoid, request_id).await {
                Ok((grant, lease)) => Ok(Serving {
                    target: Target::Remote { node: grant.node, base: grant.base, link: self.scheduler.link.clone() },
                    hold: Some(Hold::Remote(lease)),
                }),
                Err(LinkError::Refused(e)) => Err(crate::engine_errors::from_acquire(e)),
                Err(LinkError::NoLeader(reason)) => {
                    tracing::warn!(%reason, "No scheduler leader answered in time");
                    Err(ApiError::Waking {
                        model: model.to_string(),
                        waited_s: self.scheduler.patience.as_secs(),
                        retry_after_s: 1,
                    })
                }
                Err(e @ (LinkError::Garbled(_) | LinkError::WrongToken)) => Err(ApiError::Internal(e.to_string())),
            }
        })
    }

    fn wake_progress<'a>(
        &'a self,
        model: &'a ModelName,
    ) -> Pin<Box<dyn Future<Output = Option<greenthread_core::WakeProgress>> + Send + 'a>> {
        Box::pin(async move { crate::inference::access::progress_in(&self.scheduler.status().await.ok()?, model) })
    }
}

/// Runs `greenthread gateway` until a shutdown signal.
///
/// # Errors
/// [`ServeError`] when the token, the database or the listening address is unusable.
pub async fn run_gateway(args: GatewayArgs) -> Result<(), ServeError> {
    let app = start_gateway(&args).await?;
    let usage = app.usage_meter().cloned();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| ServeError::Listen { addr: args.listen, source })?;
    let addr = listener.local_addr().map_err(ServeError::Server)?;
    tracing::info!(%addr, scheduler = %args.scheduler, "Gateway serving the OpenAI API at http://{addr}/v1");
    let drain = crate::http::Drain { readiness: app.readiness.clone(), timeout: args.drain.drain_timeout };
    let served =
        crate::http::serve_draining(listener, crate::router::router(app), drain).await.map_err(ServeError::Server);
    if let Some(usage) = usage {
        // Requests that finished during the shutdown grace are metered too.
        usage.flush().await;
    }
    served
}

/// Opens the database and builds a gateway's state: the management plane,
/// the models from the database (kept in step with it), and access through
/// the scheduler at `--scheduler`.
///
/// # Errors
/// [`ServeError`] when the token, the scheduler URL or the database is unusable.
pub async fn start_gateway(args: &GatewayArgs) -> Result<AppState, ServeError> {
    let token = ClusterToken::new(&args.cluster_token).map_err(ServeError::Usage)?;
    let scheduler = args.scheduler.trim_end_matches('/').to_owned();
    if !(scheduler.starts_with("http://") || scheduler.starts_with("https://")) {
        return Err(ServeError::Usage(format!("--scheduler must be an http(s) URL, not {scheduler}")));
    }
    let store = open_store(&args.database_url).await?;
    let specs: Vec<ModelSpec> = state::load(store.db()).await?.doc.models.into_iter().map(|m| m.spec).collect();
    let limits =
        Limits { max_request_bytes: args.max_request_bytes, wake_timeout: args.wake_timeout, ..Limits::default() };
    let link = NodeLink { client: crate::cluster::http_client(), token };
    let remote = Arc::new(RemoteScheduler::new(scheduler, link, args.wake_timeout));
    let catalog = Arc::new(ModelCatalog::new(&specs, greenthread_protocol::ids::now_unix())?);
    let access = Arc::new(Delegated { scheduler: remote.clone() });
    let mut app = AppState { remote: Some(remote), ..AppState::new(catalog, access, limits) };
    let options = ManagedOptions {
        database_url: args.database_url.clone(),
        open_mode: args.management.open,
        artifact_dirs: args.management.artifact_dirs.clone(),
        admin_token: std::env::var(greenthread_store::auth::ADMIN_TOKEN_ENV).ok().filter(|t| !t.is_empty()),
        config: None,
        clock: Arc::new(SystemClock),
        sync_every: args.sync_every,
        rate_window: args.management.rate_window,
        responses_retention: args.management.responses_retention,
        resolver: txt_resolver(args.management.dns_server),
    };
    attach_management(&mut app, store, &specs, options, AdminBootstrap::ConfiguredOnly).await?;
    Ok(app)
}

/// Tries to open the shared database a few times: gateways and the
/// scheduler start together, and two processes migrating one empty
/// database at once can trip over each other; the next try finds it done.
async fn open_store(url: &str) -> Result<Store, ServeError> {
    const TRIES: u32 = 5;
    let mut attempt = 1;
    loop {
        match Store::open(url, Arc::new(SystemClock)).await {
            Ok(store) => return Ok(store),
            Err(e) if attempt < TRIES => {
                tracing::warn!(error = %e, attempt, "Cannot open the database yet; retrying");
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
