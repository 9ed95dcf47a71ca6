//! `greenthread serve`: the whole platform in one process — gateway,
//! scheduler and one node — over the models of a config file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use greenthread_core::ModelSpec;
use greenthread_node_runtime::builtin::BuiltinEngine;
use greenthread_node_runtime::node::{HostResources, LocalNode, NodeConfig, TierBudgets};
use greenthread_scheduler::{ManagedModel, ManagerConfig, ModelManager, PreemptionRules};

use crate::catalog::ModelCatalog;
use crate::cli::{ServeArgs, TierArgs};
use crate::config::{Config, ConfigError};
use crate::http::state::{AppState, Limits};
use crate::metrics::Metrics;

/// Why `serve` could not start or stopped.
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
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("server failed: {0}")]
    Server(std::io::Error),
}

/// Byte budgets of all tiers of this node.
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

/// Runs `greenthread serve` until a shutdown signal.
///
/// # Errors
/// [`ServeError`] when the config, the data directory, a budget or the
/// listening address is unusable. A model that fails to stage does not stop
/// the server: it is reported and its requests get the reason.
pub async fn run_serve(args: ServeArgs) -> Result<(), ServeError> {
    let _lock = lock_data_dir(&args.data_dir)?;
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => {
            tracing::warn!("No --config given: serving no models");
            Config::default()
        }
    };
    let budgets = Budgets::resolve(&args.tiers, HostResources::probe(&args.data_dir))?;
    let engine = BuiltinEngine::best_available().with_max_sequences(args.limits.max_sequences);
    tracing::info!(
        device = engine.device_name(),
        device_budget = %greenthread_core::ByteSize(budgets.device),
        ram_budget = %greenthread_core::ByteSize(budgets.ram),
        disk_budget = %greenthread_core::ByteSize(budgets.disk),
        models = config.models.len(),
        "Starting"
    );
    let limits = Limits {
        max_request_bytes: args.limits.max_request_bytes,
        wake_timeout: args.limits.wake_timeout,
        ..Limits::default()
    };
    let rules = PreemptionRules { min_residency: args.limits.min_residency, force_after: args.limits.preempt_after };
    let platform = Platform { budgets, engine, limits, rules };
    let state = start_platform(&config.models, &args.data_dir, platform).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| ServeError::Listen { addr: args.listen, source })?;
    let addr = listener.local_addr().map_err(ServeError::Server)?;
    tracing::info!(%addr, "Serving the OpenAI API at http://{addr}/v1");
    crate::http::serve(listener, crate::http::router(state)).await.map_err(ServeError::Server)
}

/// Everything that shapes one node's platform.
#[derive(Debug, Clone)]
pub struct Platform {
    pub budgets: Budgets,
    pub engine: BuiltinEngine,
    pub limits: Limits,
    pub rules: PreemptionRules,
}

/// Builds the node, the scheduler and the shared state for `specs`, and
/// waits until every artifact is staged (or has failed to).
///
/// # Errors
/// When the specs conflict or the cache directory cannot be created.
pub async fn start_platform(specs: &[ModelSpec], data_dir: &Path, platform: Platform) -> Result<AppState, ServeError> {
    let Platform { budgets, engine, limits, rules } = platform;
    let catalog = ModelCatalog::new(specs, crate::openai::now_unix_seconds())?;
    let node_config = NodeConfig {
        cache_dir: data_dir.join("cache"),
        budgets: TierBudgets { ram: budgets.ram, disk: budgets.disk },
        engine,
    };
    let node = LocalNode::new(node_config, specs)
        .map_err(|source| ServeError::DataDir { path: data_dir.to_path_buf(), source })?;
    let metrics = Arc::new(Metrics::new());
    let managed = specs.iter().map(|spec| ManagedModel { spec: spec.clone(), device_bytes: 0 }).collect();
    let manager_config =
        ManagerConfig { wake_timeout: limits.wake_timeout, rules, ..ManagerConfig::new(budgets.device) };
    let manager = ModelManager::start(Arc::new(node.clone()), managed, manager_config, metrics.clone());
    manager.staged().await;
    if let Ok(status) = manager.status().await {
        for m in status.models {
            tracing::info!(model = %m.name, state = %m.state, "Model staged");
        }
    }
    Ok(AppState { catalog: Arc::new(catalog), manager, node, metrics, limits })
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
