//! `greenthread serve`: load the configured models and serve them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use greenthread_node_runtime::builtin::BuiltinEngine;

use crate::cli::ServeArgs;
use crate::config::{Config, ConfigError};
use crate::http::state::{AppState, Limits};
use crate::registry::{ModelRegistry, RegistryError};

/// Why `serve` could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Models(#[from] RegistryError),
    #[error("data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("data directory {0} is in use by another greenthread server")]
    DataDirLocked(PathBuf),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("server failed: {0}")]
    Server(std::io::Error),
}

/// Runs `greenthread serve` until a shutdown signal.
///
/// # Errors
/// [`ServeError`] when the config, a model, the data directory or the
/// listening address is unusable.
pub async fn run_serve(args: ServeArgs) -> Result<(), ServeError> {
    let _lock = lock_data_dir(&args.data_dir)?;
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => {
            tracing::warn!("No --config given: serving no models");
            Config::default()
        }
    };
    let engine = BuiltinEngine::best_available().with_max_sequences(args.limits.max_sequences);
    tracing::info!(device = engine.device_name(), models = config.models.len(), "Loading models");
    let specs = config.models;
    let now = crate::openai::now_unix_seconds();
    let registry = tokio::task::spawn_blocking(move || ModelRegistry::load(&specs, &engine, now))
        .await
        .map_err(|e| ServeError::Server(std::io::Error::other(e)))??;
    for m in registry.all() {
        let info = m.instance.info();
        tracing::info!(
            model = %m.spec.name,
            architecture = %info.architecture,
            context = info.context_length,
            weight_mib = info.weight_bytes / (1 << 20),
            "Model ready"
        );
    }
    let state = AppState {
        models: Arc::new(registry),
        limits: Limits { max_request_bytes: args.limits.max_request_bytes, ..Limits::default() },
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| ServeError::Listen { addr: args.listen, source })?;
    let addr = listener.local_addr().map_err(ServeError::Server)?;
    tracing::info!(%addr, "Serving the OpenAI API at http://{addr}/v1");
    crate::http::serve(listener, crate::http::router(state)).await.map_err(ServeError::Server)
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
