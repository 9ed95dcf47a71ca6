//! `greenthread serve` (gateway and scheduler, with a node of its own unless
//! `--no-local-node`, and remote nodes when given a cluster token) and
//! `greenthread node` (a node of a cluster).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use greenthread_core::{ModelSpec, NodeId};
use greenthread_node_runtime::builtin::BuiltinEngine;
use greenthread_node_runtime::node::{HostResources, LocalArtifacts, LocalNode, NodeConfig, TierBudgets};
use greenthread_scheduler::{ManagedModel, ManagerConfig, ModelManager, NodeHandle, PreemptionRules};

use crate::catalog::ModelCatalog;
use crate::cli::{NodeArgs, ServeArgs, TierArgs};
use crate::cluster::Cluster;
use crate::cluster::token::ClusterToken;
use crate::config::{Config, ConfigError};
use crate::gate::Gate;
use crate::http::limits::Limits;
use crate::inference::access::Scheduled;
use crate::inference::archive::ResponseArchive;
use crate::inference::metering::Metering;
use crate::manage::{ArtifactPolicy, Management, Registry};
use crate::metrics::Metrics;
use crate::state::AppState;
use greenthread_core::desired::StateDoc;
use greenthread_store::auth::KeyService;
use greenthread_store::{Clock, Store, SystemClock, state};

/// The id of the node inside an all-in-one server.
pub const LOCAL_NODE: &str = "local";

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Models(#[from] greenthread_core::ModelSpecError),
    #[error("data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("data directory {0} is in use by another greenthread server")]
    DataDirLocked(PathBuf),
    #[error("cannot size the {0} tier automatically on this machine; pass its budget explicitly")]
    UnknownBudget(&'static str),
    #[error("{0}")]
    Usage(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("server failed: {0}")]
    Server(std::io::Error),
    #[error("database: {0}")]
    Store(#[from] greenthread_store::StoreError),
    #[error("--config: {0}")]
    ConfigApply(crate::manage::OpError),
}

/// Byte budgets of all tiers of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    pub device: u64,
    pub ram: u64,
    pub disk: u64,
}

impl Budgets {
    /// The explicit budgets, else defaults for a CPU node: half the RAM for
    /// the device tier (awake models), a quarter for sleeping models, half
    /// of the free disk for cached artifacts.
    ///
    /// # Errors
    /// When a default is needed but the machine could not be measured.
    pub fn resolve(args: &TierArgs, host: HostResources) -> Result<Self, ServeError> {
        let pick = |given: Option<greenthread_core::ByteSize>, probed: u64, share: u64, what| match given {
            Some(b) => Ok(b.bytes()),
            None if probed > 0 => Ok(probed / share),
            None => Err(ServeError::UnknownBudget(what)),
        };
        Ok(Self {
            device: pick(args.device_memory, host.total_ram, 2, "device")?,
            ram: pick(args.ram_cache, host.total_ram, 4, "ram")?,
            disk: pick(args.disk_cache, host.available_disk, 2, "disk")?,
        })
    }
}

/// Everything that shapes a server's platform.
#[derive(Debug, Clone)]
pub struct Platform {
    pub budgets: Budgets,
    pub engine: BuiltinEngine,
    pub limits: Limits,
    pub rules: PreemptionRules,
    /// Run a node in this process.
    pub local_node: bool,
    /// Accept remote nodes holding this token.
    pub cluster_token: Option<ClusterToken>,
    /// The local files this process's node may read artifacts from.
    pub local_artifacts: LocalArtifacts,
}

fn cluster_token(raw: Option<&str>) -> Result<Option<ClusterToken>, ServeError> {
    raw.map(|t| ClusterToken::new(t).map_err(ServeError::Usage)).transpose()
}

/// Runs `greenthread serve` until a shutdown signal.
///
/// # Errors
/// [`ServeError`] when the config, the data directory, a budget or the
/// listening address is unusable. A model that fails to stage does not stop
/// the server: it is reported and its requests get the reason.
pub async fn run_serve(args: ServeArgs) -> Result<(), ServeError> {
    // On Kubernetes, a replica serves only while it leads.
    let leadership = if args.kubernetes.kubernetes {
        Some(
            crate::kube_operator::lead(&args.kubernetes, args.listen)
                .await
                .map_err(|e| ServeError::Usage(e.to_string()))?,
        )
    } else {
        None
    };
    let _lock = lock_data_dir(&args.data_dir)?;
    let config = match &args.config {
        Some(path) => Some(Config::load(path)?),
        None => {
            tracing::info!("No --config given: serving the models in the database");
            None
        }
    };
    let token = cluster_token(args.cluster_token.as_deref())?;
    if args.no_local_node && token.is_none() {
        return Err(ServeError::Usage("--no-local-node needs --cluster-token so that nodes can join".into()));
    }
    let budgets = Budgets::resolve(&args.tiers, HostResources::probe(&args.data_dir))?;
    let engine = BuiltinEngine::best_available().with_max_sequences(args.limits.max_sequences);
    tracing::info!(
        device = engine.device_name(),
        local_node = !args.no_local_node,
        cluster = token.is_some(),
        device_budget = %greenthread_core::ByteSize(budgets.device),
        ram_budget = %greenthread_core::ByteSize(budgets.ram),
        disk_budget = %greenthread_core::ByteSize(budgets.disk),
        models_in_config = config.as_ref().map_or(0, |c| c.state.models.len()),
        "Starting"
    );
    let (platform, options) = serve_options(&args, config, token, budgets, engine)?;
    let started = start_managed(&args.data_dir, platform, options).await?;
    if let Some(secret) = &started.bootstrap_secret {
        // Printed once, to the terminal only: the database keeps a hash.
        eprintln!(
            "\n  An admin API key was created for this new installation. It is shown only now:\n\n    {secret}\n\n  \
             Use it as `Authorization: Bearer <key>` for /graphql, and create other keys there.\n"
        );
    }
    if args.management.open {
        tracing::warn!("Open mode: requests without an API key may call models until the first inference key exists");
    }
    let state = started.state;
    let usage = state.usage_meter().cloned();
    let leader = match leadership {
        Some(l) => Some(lead_the_cluster(l, &args, &state).await),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| ServeError::Listen { addr: args.listen, source })?;
    let addr = listener.local_addr().map_err(ServeError::Server)?;
    if let Some(l) = &leader {
        l.announce().await.map_err(|e| ServeError::Usage(e.to_string()))?;
    }
    let lost = leader.map(|l| crate::kube_operator::lost(l.leading));
    tracing::info!(%addr, "Serving the OpenAI API at http://{addr}/v1");
    let drain = crate::http::Drain { readiness: state.readiness.clone(), timeout: args.drain.drain_timeout };
    let serving = crate::http::serve_draining(listener, crate::router::router(state), drain);
    let served = match lost {
        Some(lost) => tokio::select! {
            served = serving => served.map_err(ServeError::Server),
            () = lost => Err(ServeError::Usage("lost the leader Lease; exiting so that the pod restarts as a follower".into())),
        },
        None => serving.await.map_err(ServeError::Server),
    };
    if let Some(usage) = usage {
        // Requests that finished during the shutdown grace are metered too.
        usage.flush().await;
    }
    served
}

/// What `greenthread serve`'s flags and config file make of the platform
/// and its management plane.
fn serve_options(
    args: &ServeArgs,
    config: Option<Config>,
    token: Option<ClusterToken>,
    budgets: Budgets,
    engine: BuiltinEngine,
) -> Result<(Platform, ManagedOptions), ServeError> {
    let artifact_dirs = artifact_dirs(&args.management.artifact_dirs, &args.data_dir)?;
    // The operator's config may name model files anywhere: exactly those files are allowed too.
    let configured = config.iter().flat_map(|c| c.state.models.iter()).filter_map(|m| m.spec.artifact.local_path());
    let local_artifacts = LocalArtifacts::within(artifact_dirs.clone(), configured.map(Path::to_path_buf));
    let platform = Platform {
        budgets,
        engine,
        limits: Limits {
            max_request_bytes: args.limits.max_request_bytes,
            wake_timeout: args.limits.wake_timeout,
            ..Limits::default()
        },
        rules: PreemptionRules { min_residency: args.limits.min_residency, force_after: args.limits.preempt_after },
        local_node: !args.no_local_node,
        cluster_token: token,
        local_artifacts,
    };
    let options = ManagedOptions {
        database_url: args.database_url.clone().unwrap_or_else(|| Store::sqlite_url(&args.data_dir)),
        open_mode: args.management.open,
        artifact_dirs,
        admin_token: std::env::var(greenthread_store::auth::ADMIN_TOKEN_ENV).ok().filter(|t| !t.is_empty()),
        config: config.map(|c| c.state),
        clock: Arc::new(SystemClock),
        sync_every: SYNC_EVERY,
        rate_window: args.management.rate_window,
        responses_retention: args.management.responses_retention,
        resolver: txt_resolver(args.management.dns_server),
    };
    Ok((platform, options))
}

/// Takes over from the standby listener and starts what only the leader
/// runs: the `Model` operator and node discovery.
async fn lead_the_cluster(
    mut leadership: crate::kube_operator::Leadership,
    args: &ServeArgs,
    state: &AppState,
) -> crate::kube_operator::Leadership {
    // The standby listener gives the address to the full server.
    leadership.stop_standby().await;
    if let Some(mgmt) = state.management.clone() {
        crate::kube_operator::spawn_operator(
            leadership.client.clone(),
            args.kubernetes.watch_namespace.as_deref(),
            mgmt,
            state.manager.clone(),
            greenthread_kube::reconcile::REFRESH,
        );
    }
    if let Some(manager) = state.manager.clone() {
        crate::kube_operator::spawn_discovery(
            leadership.client.clone(),
            args.kubernetes.lease_namespace.clone(),
            args.kubernetes.node_pod_selector.clone(),
            manager,
        );
    }
    leadership
}

/// The given artifact folders, else `<data-dir>/artifacts` (created) and
/// the models cache (`$GREENTHREAD_MODELS`).
fn artifact_dirs(given: &[PathBuf], data_dir: &Path) -> Result<Vec<PathBuf>, ServeError> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    let own = data_dir.join("artifacts");
    std::fs::create_dir_all(&own).map_err(|source| ServeError::DataDir { path: own.clone(), source })?;
    let mut dirs = vec![own];
    dirs.extend(std::env::var_os("GREENTHREAD_MODELS").map(PathBuf::from));
    Ok(dirs)
}

/// Where custom domains' TXT records are looked up: the given server, else the system's.
/// Without a usable DNS configuration the server still starts; verifying a
/// domain then says why it cannot.
pub(crate) fn txt_resolver(dns_server: Option<std::net::SocketAddr>) -> Arc<dyn crate::domains::TxtResolver> {
    let resolver = match dns_server {
        Some(addr) => crate::domains::HickoryResolver::at(addr),
        None => crate::domains::HickoryResolver::system(),
    };
    match resolver {
        Ok(r) => Arc::new(r),
        Err(e) => {
            tracing::warn!(error = %e, "No DNS resolver; custom domains cannot be verified");
            Arc::new(crate::domains::dns::Unavailable(e))
        }
    }
}

/// How often a server re-reads the model specs, for changes made through
/// another server of the same database.
pub const SYNC_EVERY: Duration = Duration::from_secs(5);

/// The management plane's settings.
pub struct ManagedOptions {
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// Requests without a key may call models until the first inference key exists.
    pub open_mode: bool,
    /// Where artifacts of models created through the API may come from.
    pub artifact_dirs: Vec<PathBuf>,
    /// A bootstrap admin secret to accept (stored hashed), instead of generating one.
    pub admin_token: Option<String>,
    /// A desired-state document to apply at start (`--config`).
    pub config: Option<StateDoc>,
    pub clock: Arc<dyn Clock>,
    pub sync_every: Duration,
    /// The fixed window per-key rate limits are counted in.
    pub rate_window: Duration,
    /// How long stored responses are kept.
    pub responses_retention: Duration,
    /// Where custom domains' TXT records are looked up.
    pub resolver: Arc<dyn crate::domains::TxtResolver>,
}

/// A started server: its state, and a bootstrap admin secret to show once.
pub struct Started {
    pub state: AppState,
    pub bootstrap_secret: Option<String>,
}

/// Opens the database (migrating it), applies `--config`, starts the
/// platform with the stored models, and adds the management plane: keys,
/// GraphQL, and the registry that keeps serving in step with the database.
///
/// # Errors
/// [`ServeError`] when the database, the config or the platform fails.
pub async fn start_managed(
    data_dir: &Path,
    platform: Platform,
    options: ManagedOptions,
) -> Result<Started, ServeError> {
    let store = Store::open(&options.database_url, options.clock.clone()).await?;
    if let Some(doc) = &options.config {
        crate::manage::apply_config(&store, doc).await.map_err(ServeError::ConfigApply)?;
    }
    let specs: Vec<ModelSpec> = state::load(store.db()).await?.doc.models.into_iter().map(|m| m.spec).collect();
    let mut app = start_platform(&specs, data_dir, platform).await?;
    let bootstrap_secret = attach_management(&mut app, store, &specs, options, AdminBootstrap::GenerateIfNone).await?;
    Ok(Started { state: app, bootstrap_secret })
}

/// Where the first admin key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminBootstrap {
    /// The configured secret, else a generated key when there is no admin yet.
    GenerateIfNone,
    /// The configured secret only: a process that shows no terminal to anyone.
    ConfiguredOnly,
}

/// Adds the management plane to `app`: keys, GraphQL, usage metering, and
/// the registry that keeps serving in step with the database (`specs` are
/// what `app` serves already). Returns a generated admin secret, if any.
///
/// # Errors
/// When the database fails.
pub(crate) async fn attach_management(
    app: &mut AppState,
    store: Store,
    specs: &[ModelSpec],
    options: ManagedOptions,
    bootstrap: AdminBootstrap,
) -> Result<Option<String>, ServeError> {
    let registry = Arc::new(Registry::new(store.clone(), app.catalog().clone(), app.manager.clone(), specs));
    registry.sync().await?;
    registry.spawn_periodic(options.sync_every);
    let keys = Arc::new(KeyService::new(store.clone()).await?);
    let bootstrap_secret = match (bootstrap, options.admin_token.as_deref()) {
        (AdminBootstrap::ConfiguredOnly, None) => None,
        (_, token) => keys.bootstrap_admin(token).await?,
    };
    let management = Arc::new(Management {
        store,
        keys: keys.clone(),
        registry,
        artifacts: ArtifactPolicy::new(options.artifact_dirs),
        resolver: options.resolver,
    });
    app.gate = Some(Arc::new(Gate { keys, open_mode: options.open_mode, rate_window: options.rate_window }));
    let meter = crate::usage::UsageMeter::start(management.store.clone(), options.rate_window);
    app.inference.metering = Some(Metering { meter, registry: management.registry.clone() });
    let keyless_project = state::project_by_name(management.store.db(), greenthread_store::DEFAULT_PROJECT)
        .await?
        .ok_or_else(|| ServeError::Usage("the default project is missing".into()))?
        .id;
    let archive = ResponseArchive::new(management.store.clone(), options.responses_retention, keyless_project);
    archive.spawn_pruning();
    app.inference.responses = Some(archive);
    app.management = Some(management);
    Ok(bootstrap_secret)
}

/// Builds the scheduler, this process's node (if any), the cluster (if a
/// token is given) and the shared state for `specs`, and waits until the
/// start-up staging is over.
///
/// # Errors
/// When the specs conflict or the cache directory cannot be created.
pub async fn start_platform(specs: &[ModelSpec], data_dir: &Path, platform: Platform) -> Result<AppState, ServeError> {
    let Platform { budgets, engine, limits, rules, local_node, cluster_token, local_artifacts } = platform;
    let catalog = Arc::new(ModelCatalog::new(specs, greenthread_protocol::ids::now_unix())?);
    let metrics = Arc::new(Metrics::new());
    let mut nodes = Vec::new();
    let local = if local_node {
        let node = new_local_node(data_dir, budgets, engine, specs, local_artifacts)?;
        let id = NodeId::parse(LOCAL_NODE).map_err(|e| ServeError::Usage(e.to_string()))?;
        nodes.push(NodeHandle {
            id: id.clone(),
            control: Arc::new(node.clone()),
            device_budget: budgets.device,
            holdings: Vec::new(),
        });
        Some((id, node))
    } else {
        None
    };
    let managed = specs.iter().map(|spec| ManagedModel { spec: spec.clone(), device_bytes: 0 }).collect();
    let manager_config = ManagerConfig { wake_timeout: limits.wake_timeout, rules, ..ManagerConfig::default() };
    let manager = ModelManager::start(nodes, managed, manager_config, metrics.clone());
    let cluster = cluster_token.map(|t| Arc::new(Cluster::new(t, manager.clone())));
    if let Some(c) = &cluster {
        c.spawn_reaper();
    }
    if let Some((id, node)) = &local {
        report_engine_exits(node, id.clone(), manager.clone());
    }
    manager.staged().await;
    if let Ok(status) = manager.status().await {
        for m in status.models {
            tracing::info!(model = %m.name, state = %m.state, "Model ready");
        }
    }
    let access = Arc::new(Scheduled { manager: manager.clone(), local: local.clone(), cluster: cluster.clone() });
    Ok(AppState {
        manager: Some(manager),
        node: local.map(|(_, n)| n),
        cluster,
        ..AppState::new(catalog, access, limits).with_metrics(metrics)
    })
}

/// Tells the manager when an engine of the local node exits on its own,
/// so the replica is failed with the engine's last words and the model's
/// next request starts it again.
fn report_engine_exits(node: &LocalNode, id: NodeId, manager: ModelManager) {
    let mut exits = node.engine_exits();
    tokio::spawn(async move {
        loop {
            match exits.recv().await {
                Ok(exit) => manager.replica_failed(&exit.model, &id, exit.reason),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

fn new_local_node(
    data_dir: &Path,
    budgets: Budgets,
    engine: BuiltinEngine,
    specs: &[ModelSpec],
    local_artifacts: LocalArtifacts,
) -> Result<LocalNode, ServeError> {
    let config = NodeConfig {
        cache_dir: data_dir.join("cache"),
        budgets: TierBudgets { ram: budgets.ram, disk: budgets.disk },
        engine,
        local_artifacts,
    };
    LocalNode::new(config, specs).map_err(|source| ServeError::DataDir { path: data_dir.to_path_buf(), source })
}

/// Runs `greenthread node` until a shutdown signal.
///
/// # Errors
/// [`ServeError`] when the token, the data directory, a budget or the
/// listening address is unusable.
pub async fn run_node(args: NodeArgs) -> Result<(), ServeError> {
    let _lock = lock_data_dir(&args.data_dir)?;
    let token = ClusterToken::new(&args.cluster_token).map_err(ServeError::Usage)?;
    let budgets = Budgets::resolve(&args.tiers, HostResources::probe(&args.data_dir))?;
    let engine = BuiltinEngine::best_available().with_max_sequences(args.max_sequences);
    let artifact_dirs = artifact_dirs(&args.artifact_dirs, &args.data_dir)?;
    let local = LocalArtifacts::within(artifact_dirs.clone(), []);
    let node = new_local_node(&args.data_dir, budgets, engine, &[], local)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| ServeError::Listen { addr: args.listen, source })?;
    let addr = listener.local_addr().map_err(ServeError::Server)?;
    let advertise = args.advertise.unwrap_or_else(|| format!("http://{addr}"));
    let id = match args.id {
        Some(id) => id,
        None => NodeId::parse(&format!("node-{}", addr.port())).map_err(|e| ServeError::Usage(e.to_string()))?,
    };
    tracing::info!(node = %id, %advertise, control_plane = %args.control_plane, device_budget = %greenthread_core::ByteSize(budgets.device), "Node starting");
    let limits = Limits { max_request_bytes: args.max_request_bytes, ..Limits::default() };
    crate::node_server::spawn_heartbeat(node.clone(), id, advertise, args.control_plane, budgets.device, token.clone());
    let artifacts = ArtifactPolicy::new(artifact_dirs);
    let router = crate::node_server::router(node, token, limits, artifacts);
    let drain = crate::http::Drain { timeout: args.drain.drain_timeout, ..crate::http::Drain::default() };
    crate::http::serve_draining(listener, router, drain).await.map_err(ServeError::Server)
}

/// Creates the data directory and takes its lock, so two servers never share state.
fn lock_data_dir(dir: &Path) -> Result<File, ServeError> {
    let err = |source| ServeError::DataDir { path: dir.to_path_buf(), source };
    std::fs::create_dir_all(dir).map_err(err)?;
    let file =
        File::options().create(true).truncate(false).write(true).open(dir.join("greenthread.lock")).map_err(err)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(ServeError::DataDirLocked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(err(e)),
    }
}
