//! A node: its weight tiers and the models of the builtin engine, driven by
//! the scheduler through [`NodeControl`]. Everything that moves gigabytes
//! runs on blocking threads; the locks guard only bookkeeping.

mod fetch;
mod local_files;
mod open;
mod resources;
mod tiers;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use greenthread_core::{
    ModelName, ModelSpec, NodeControl, NodeError, NodeFuture, StageReport, Tier, TierUsage, WakeReport, WarmTier,
};
use tokio::time::Instant;

pub use self::local_files::LocalArtifacts;
pub use self::open::open_model;
pub use self::resources::{HostResources, evict_from_page_cache};
pub use self::tiers::TierBudgets;
use self::tiers::TierStore;
use crate::builtin::BuiltinEngine;
use crate::engine::WeightSource;
use crate::external::ExternalModel;
use crate::{ModelInstance, ServedModel};

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The disk tier: verified artifacts, one file per model.
    pub cache_dir: PathBuf,
    pub budgets: TierBudgets,
    pub engine: BuiltinEngine,
    /// The local files models may be read from.
    pub local_artifacts: LocalArtifacts,
}

/// A node in this process.
#[derive(Clone)]
pub struct LocalNode {
    inner: Arc<Inner>,
}

/// An external engine that exited without being asked to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineExit {
    pub model: ModelName,
    /// How it ended and its last lines of output.
    pub reason: String,
}

struct Inner {
    config: NodeConfig,
    exits: tokio::sync::broadcast::Sender<EngineExit>,
    specs: Mutex<HashMap<ModelName, ModelSpec>>,
    models: Mutex<HashMap<ModelName, Arc<dyn ServedModel>>>,
    /// The models of `models` that external engines serve.
    externals: Mutex<HashMap<ModelName, Arc<ExternalModel>>>,
    tiers: Mutex<TierStore>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a single insert or remove.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn engine_error(e: impl std::fmt::Display) -> NodeError {
    NodeError::Engine(e.to_string())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| NodeError::Engine(format!("node task failed: {e}")))?
}

impl LocalNode {
    /// A node for `specs`, keeping its disk tier in `config.cache_dir`.
    ///
    /// # Errors
    /// When the cache directory cannot be created.
    pub fn new(config: NodeConfig, specs: &[ModelSpec]) -> std::io::Result<Self> {
        std::fs::create_dir_all(&config.cache_dir)?;
        let tiers = TierStore::new(config.budgets);
        let node = Self {
            inner: Arc::new(Inner {
                specs: Mutex::new(specs.iter().map(|s| (s.name.clone(), s.clone())).collect()),
                config,
                exits: tokio::sync::broadcast::channel(64).0,
                models: Mutex::new(HashMap::new()),
                externals: Mutex::new(HashMap::new()),
                tiers: Mutex::new(tiers),
            }),
        };
        node.reconcile_cache(!specs.is_empty())?;
        Ok(node)
    }

    /// Makes the disk tier match the cache folder at start: verified files
    /// of models this node may serve are counted (the most recently used
    /// first, while the budget allows), everything else is deleted — files
    /// left half-written, files whose stamp does not match, and, when the
    /// node knows its models (`known_only`), files of models it no longer has.
    fn reconcile_cache(&self, known_only: bool) -> std::io::Result<()> {
        let dir = &self.inner.config.cache_dir;
        let mut kept: Vec<(ModelName, fetch::Verified, std::time::SystemTime)> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if file_name.ends_with(fetch::STAMP_SUFFIX) && path.with_extension("").exists() {
                continue;
            }
            let owner = cache_owner(&file_name).and_then(|name| {
                let spec = lock(&self.inner.specs).get(&name).cloned();
                match spec {
                    Some(spec) => (self.cache_path(&spec) == path).then_some(name),
                    None if known_only => None,
                    None => Some(name),
                }
            });
            match (owner, fetch::cached(&path, None)) {
                (Some(name), Some(verified)) => {
                    let used = std::fs::metadata(&path).and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
                    kept.push((name, verified, used));
                }
                _ => {
                    tracing::info!(file = %file_name, "Removing a file the disk tier does not record");
                    fetch::remove(&path);
                    let _ = std::fs::remove_dir_all(&path);
                }
            }
        }
        kept.sort_by_key(|(_, _, used)| std::cmp::Reverse(*used));
        for (name, verified, _) in kept {
            let mut tiers = lock(&self.inner.tiers);
            let fits = tiers.reserve_disk(&name, verified.path.clone(), verified.bytes).is_some_and(|e| e.is_empty());
            if fits {
                tiers.finish_disk(&name, verified.bytes);
            } else {
                tiers.drop_disk(&name);
                tracing::info!(model = %name, "Disk tier full at start; removing an older cached file");
                fetch::remove(&verified.path);
            }
        }
        Ok(())
    }

    /// The model, once staged.
    pub fn model(&self, name: &ModelName) -> Option<Arc<dyn ServedModel>> {
        lock(&self.inner.models).get(name).cloned()
    }

    /// Engines of this node's models that exit on their own, as they do:
    /// the scheduler marks the model failed and its next request restarts it.
    pub fn engine_exits(&self) -> tokio::sync::broadcast::Receiver<EngineExit> {
        self.inner.exits.subscribe()
    }

    /// The last `n` lines an external engine wrote; `None` for a model
    /// without one here.
    pub fn engine_logs(&self, name: &ModelName, n: usize) -> Option<Vec<String>> {
        let external = lock(&self.inner.externals).get(name).cloned()?;
        Some(external.logs(n))
    }

    /// The model as the gateway uses it, once staged.
    pub fn instance(&self, name: &ModelName) -> Option<Arc<dyn ModelInstance>> {
        self.model(name).map(|m| m as Arc<dyn ModelInstance>)
    }

    /// The fastest tier holding the model's weights: the device while awake.
    pub fn residency(&self, name: &ModelName) -> Tier {
        if self.model(name).is_some_and(|m| m.is_awake()) {
            return Tier::Device;
        }
        lock(&self.inner.tiers).fastest(name).unwrap_or(Tier::Object)
    }

    fn spec(&self, name: &ModelName) -> Result<ModelSpec, NodeError> {
        lock(&self.inner.specs).get(name).cloned().ok_or_else(|| NodeError::UnknownModel(name.to_string()))
    }

    /// Adds or replaces a model's spec; a changed spec takes effect the next
    /// time the model is staged. When what the engine loads changed (the
    /// artifact, its digest, the context window, the template), the sleeping
    /// instance and the cached weights of the old spec are dropped, so
    /// nothing of them is served again.
    pub fn put_spec(&self, spec: ModelSpec) {
        let name = spec.name.clone();
        let old = lock(&self.inner.specs).insert(name.clone(), spec.clone());
        let reloads = old.is_some_and(|old| {
            (&old.artifact, &old.sha256, old.context_length, &old.chat_template, &old.engine)
                != (&spec.artifact, &spec.sha256, spec.context_length, &spec.chat_template, &spec.engine)
        });
        if reloads && self.model(&name).is_some_and(|m| !m.is_awake()) {
            lock(&self.inner.models).remove(&name);
            lock(&self.inner.externals).remove(&name);
            let path = {
                let mut tiers = lock(&self.inner.tiers);
                tiers.drop_ram(&name);
                tiers.drop_disk(&name)
            };
            if let Some(p) = path {
                fetch::remove(&p);
            }
        }
    }

    /// Stages a model under the spec the node already has for it.
    ///
    /// # Errors
    /// As [`NodeControl::stage`]; an unknown model is [`NodeError::UnknownModel`].
    pub async fn stage_named(&self, name: &ModelName) -> Result<StageReport, NodeError> {
        self.stage_model(name).await
    }

    /// What the node holds: the fastest tier of every model it has weights for.
    pub fn holdings(&self) -> Vec<(ModelName, Tier)> {
        let names: Vec<ModelName> = lock(&self.inner.specs).keys().cloned().collect();
        names.into_iter().map(|n| (n.clone(), self.residency(&n))).filter(|(_, t)| *t != Tier::Object).collect()
    }

    /// The cached file of a model's artifact. The name carries a digest of
    /// the artifact's URI, so a model whose artifact changes never finds
    /// the old file under the new name.
    fn cache_path(&self, spec: &ModelSpec) -> PathBuf {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(spec.artifact.to_string().as_bytes());
        let extension = if fetch::is_directory(&spec.artifact) { "safetensors" } else { "gguf" };
        self.inner.config.cache_dir.join(format!("{}-{}.{extension}", spec.name, hex::encode(&digest[..6])))
    }

    async fn stage_model(&self, name: &ModelName) -> Result<StageReport, NodeError> {
        let spec = self.spec(name)?;
        if spec.engine.is_external() {
            return self.stage_external(&spec).await;
        }
        let dest = self.cache_path(&spec);
        let on_disk = lock(&self.inner.tiers).disk(name);
        if on_disk.as_ref().is_some_and(|p| *p != dest) {
            // A file of an older spec (its artifact changed while this node was down).
            self.drop_disk_copy(name);
        }
        if on_disk.as_ref() != Some(&dest) {
            match fetch::cached(&dest, spec.sha256.as_ref()) {
                Some(v) => self.admit_to_disk(name, &v.path, v.bytes)?,
                None => self.fetch_to_disk(&spec, &dest).await?,
            }
        }
        if self.model(name).is_none() {
            let engine = self.inner.config.engine.clone();
            let model = blocking(move || open_model(&engine, &spec, &dest).map_err(engine_error)).await?;
            lock(&self.inner.models).insert(name.clone(), model);
        }
        if self.spec(name)?.scaling.warm_tier == WarmTier::Ram {
            self.load_into_ram(name).await?;
        }
        let tier = lock(&self.inner.tiers).fastest(name).unwrap_or(Tier::Disk);
        let device_bytes = self.model(name).map_or(0, |m| m.footprint() as u64);
        Ok(StageReport { tier, device_bytes })
    }

    /// Stages a model an external engine serves: a file artifact is fetched
    /// into the disk tier like any (the engine reads the cached copy; the
    /// page cache is its RAM tier), a local model directory is used where it
    /// is once checked against the artifact folders.
    async fn stage_external(&self, spec: &ModelSpec) -> Result<StageReport, NodeError> {
        let name = &spec.name;
        let local_dir = match &spec.artifact {
            greenthread_core::ArtifactUri::File(path) if path.is_dir() => {
                Some(self.inner.config.local_artifacts.resolve_directory(path).map_err(NodeError::Artifact)?)
            }
            _ if fetch::is_directory(&spec.artifact) => {
                return Err(NodeError::Artifact(format!(
                    "model {name}: an external engine reads a model directory from the node's own disk; \
                     object-store directories are served by the builtin engine only"
                )));
            }
            _ => None,
        };
        let artifact = match local_dir {
            Some(dir) => dir,
            None => {
                let dest = self.cache_path(spec);
                if lock(&self.inner.tiers).disk(name).as_ref() != Some(&dest) {
                    self.drop_disk_copy(name);
                    match fetch::cached(&dest, spec.sha256.as_ref()) {
                        Some(v) => self.admit_to_disk(name, &v.path, v.bytes)?,
                        None => self.fetch_to_disk(spec, &dest).await?,
                    }
                }
                dest
            }
        };
        if self.model(name).is_none() {
            let exits = self.inner.exits.clone();
            let report: crate::external::ExitReporter = Arc::new(move |model, reason| {
                let _ = exits.send(EngineExit { model: model.clone(), reason });
            });
            // The GPU's size, where there is one: the presets' share flags need it.
            let device_total = blocking(|| Ok(crate::external::gpu::total_memory())).await?;
            let model = Arc::new(ExternalModel::new(spec, artifact, Some(report), device_total).map_err(engine_error)?);
            lock(&self.inner.externals).insert(name.clone(), model.clone());
            lock(&self.inner.models).insert(name.clone(), model);
        }
        let device_bytes = self.model(name).map_or(0, |m| m.footprint() as u64);
        Ok(StageReport { tier: Tier::Disk, device_bytes })
    }

    /// Fetches `spec`'s artifact into the disk cache at `dest`, with room
    /// reserved for it first: a fetch never takes the tier past its budget,
    /// and a fetch that fails or is abandoned gives its room back.
    async fn fetch_to_disk(&self, spec: &ModelSpec, dest: &Path) -> Result<(), NodeError> {
        let name = &spec.name;
        let local = &self.inner.config.local_artifacts;
        let size = fetch::source_size(&spec.artifact, local).await?;
        self.make_disk_room(name, dest, size)?;
        let arriving =
            Arriving { node: self, name: name.clone(), tier: Tier::Disk, path: Some(dest.to_path_buf()), done: false };
        tracing::info!(model = %name, artifact = %spec.artifact, "Fetching artifact");
        let fetched = if fetch::is_directory(&spec.artifact) {
            fetch::fetch_directory(&spec.artifact, dest, spec.sha256.as_ref(), local, size).await?
        } else {
            fetch::fetch(&spec.artifact, dest, spec.sha256.as_ref(), local, size).await?
        };
        let evicted = {
            let mut tiers = lock(&self.inner.tiers);
            let evicted = tiers.finish_disk(name, fetched.bytes);
            tiers.unpin(name);
            evicted
        };
        let Some(evicted) = evicted else {
            return Err(NodeError::Artifact(format!(
                "model {name} needs {} bytes of disk cache, more than the budget leaves",
                fetched.bytes
            )));
        };
        arriving.arrived();
        remove_evicted(evicted);
        Ok(())
    }

    /// Reserves `bytes` of disk for `name`'s file at `path` (pinned until
    /// finished), deleting the files given up for it.
    fn make_disk_room(&self, name: &ModelName, path: &Path, bytes: u64) -> Result<(), NodeError> {
        let mut tiers = lock(&self.inner.tiers);
        tiers.pin(name);
        let Some(evicted) = tiers.reserve_disk(name, path.to_path_buf(), bytes) else {
            tiers.unpin(name);
            return Err(NodeError::Artifact(format!(
                "model {name} needs {bytes} bytes of disk cache, more than the disk budget leaves free"
            )));
        };
        drop(tiers);
        remove_evicted(evicted);
        Ok(())
    }

    /// Accounts a verified file already in the cache to the disk tier.
    fn admit_to_disk(&self, name: &ModelName, path: &Path, bytes: u64) -> Result<(), NodeError> {
        if let Err(e) = self.make_disk_room(name, path, bytes) {
            fetch::remove(path);
            return Err(e);
        }
        let mut tiers = lock(&self.inner.tiers);
        let evicted = tiers.finish_disk(name, bytes);
        tiers.unpin(name);
        remove_evicted(evicted.unwrap_or_default());
        Ok(())
    }

    /// Forgets and deletes `name`'s disk copy, if it has one.
    fn drop_disk_copy(&self, name: &ModelName) {
        let path = lock(&self.inner.tiers).drop_disk(name);
        if let Some(p) = path {
            fetch::remove(&p);
        }
    }

    /// Puts the model's artifact in RAM if the budget allows (room is
    /// reserved before it is read); a model that does not fit simply stays on disk.
    async fn load_into_ram(&self, name: &ModelName) -> Result<(), NodeError> {
        let path = {
            let mut tiers = lock(&self.inner.tiers);
            if tiers.has_ram(name) {
                return Ok(());
            }
            let Some(path) = tiers.disk(name) else { return Ok(()) };
            let bytes = std::fs::metadata(&path).map_err(engine_error)?.len();
            tiers.pin(name);
            let room = tiers.reserve_ram(name, bytes);
            tiers.unpin(name);
            match room {
                Some(evicted) => {
                    for m in evicted {
                        tracing::info!(model = %m, "RAM tier full; its copy moves down to disk");
                    }
                }
                None => {
                    tracing::info!(model = %name, "RAM tier has no room; it waits on disk");
                    return Ok(());
                }
            }
            path
        };
        let arriving = Arriving { node: self, name: name.clone(), tier: Tier::Ram, path: None, done: false };
        let data = blocking(move || std::fs::read(&path).map_err(engine_error)).await?;
        if !lock(&self.inner.tiers).fill_ram(name, Arc::new(data)) {
            return Err(NodeError::Artifact(format!("model {name}: the cached file changed while being read")));
        }
        arriving.arrived();
        Ok(())
    }

    /// Drops everything the node holds of `removed` (a model deleted from
    /// the platform): its instance, its spec, its RAM copy and its cached
    /// file. If the node was given a newer spec under the name since (the
    /// model was created again), that stays, and only the old spec's cache
    /// file, if it is another file, goes.
    async fn forget_model(&self, removed: &ModelSpec) -> Result<(), NodeError> {
        let name = &removed.name;
        let current = lock(&self.inner.specs).get(name).cloned();
        if let Some(current) = current.filter(|c| c != removed) {
            let (old, new) = (self.cache_path(removed), self.cache_path(&current));
            if old != new {
                fetch::remove(&old);
            }
            tracing::info!(model = %name, "A removed spec's name has a new spec here; keeping it");
            return Ok(());
        }
        let model = lock(&self.inner.models).remove(name);
        lock(&self.inner.externals).remove(name);
        if let Some(model) = model {
            blocking(move || model.sleep().map_err(engine_error)).await?;
        }
        lock(&self.inner.specs).remove(name);
        lock(&self.inner.tiers).drop_ram(name);
        self.drop_disk_copy(name);
        tracing::info!(model = %name, "Model forgotten; its RAM copy and cached file are gone");
        Ok(())
    }

    async fn wake_model(&self, name: &ModelName) -> Result<WakeReport, NodeError> {
        let model = self.model(name).ok_or_else(|| NodeError::Engine(format!("model {name} is not staged")))?;
        if lock(&self.inner.externals).contains_key(name) {
            // The engine reads its artifact itself; the wake is its start (or restore).
            return blocking(move || {
                let started = Instant::now();
                model.wake(WeightSource::File(Path::new(""))).map_err(engine_error)?;
                Ok(WakeReport {
                    from: Tier::Disk,
                    duration: started.elapsed(),
                    device_bytes: model.device_bytes() as u64,
                })
            })
            .await;
        }
        let (from, ram, disk) = {
            let mut tiers = lock(&self.inner.tiers);
            tiers.pin(name);
            let ram = tiers.ram(name);
            let disk = tiers.disk(name);
            (if ram.is_some() { Tier::Ram } else { Tier::Disk }, ram, disk)
        };
        let result = blocking(move || {
            let started = Instant::now();
            let source = match (&ram, &disk) {
                (Some(bytes), _) => WeightSource::Memory(bytes.as_slice()),
                (None, Some(path)) => WeightSource::File(path),
                (None, None) => {
                    return Err(NodeError::Engine("no tier holds the model's weights; stage it first".into()));
                }
            };
            model.wake(source).map_err(engine_error)?;
            Ok(WakeReport { from, duration: started.elapsed(), device_bytes: model.device_bytes() as u64 })
        })
        .await;
        lock(&self.inner.tiers).unpin(name);
        result
    }

    async fn sleep_model(&self, name: &ModelName, warm: WarmTier) -> Result<Tier, NodeError> {
        if let Some(model) = self.model(name) {
            blocking(move || model.sleep().map_err(engine_error)).await?;
        }
        if lock(&self.inner.externals).contains_key(name) {
            if warm == WarmTier::Object {
                self.drop_disk_copy(name);
            }
            return Ok(lock(&self.inner.tiers).fastest(name).unwrap_or(Tier::Disk));
        }
        match warm {
            WarmTier::Ram => self.load_into_ram(name).await?,
            WarmTier::Disk => {
                lock(&self.inner.tiers).drop_ram(name);
            }
            WarmTier::Object => {
                lock(&self.inner.tiers).drop_ram(name);
                self.drop_disk_copy(name);
            }
        }
        Ok(lock(&self.inner.tiers).fastest(name).unwrap_or(Tier::Object))
    }
}

impl NodeControl for LocalNode {
    fn stage<'a>(&'a self, spec: &'a ModelSpec) -> NodeFuture<'a, StageReport> {
        Box::pin(async move {
            self.put_spec(spec.clone());
            self.stage_model(&spec.name).await
        })
    }

    fn wake<'a>(&'a self, model: &'a ModelName) -> NodeFuture<'a, WakeReport> {
        Box::pin(self.wake_model(model))
    }

    fn sleep<'a>(&'a self, model: &'a ModelName, warm: WarmTier) -> NodeFuture<'a, Tier> {
        Box::pin(self.sleep_model(model, warm))
    }

    fn forget<'a>(&'a self, spec: &'a ModelSpec) -> NodeFuture<'a, ()> {
        Box::pin(self.forget_model(spec))
    }

    fn tiers(&self) -> Vec<TierUsage> {
        lock(&self.inner.tiers).usage()
    }
}

/// Room reserved in a tier for a copy still arriving. Unless it arrives,
/// the room is given back (and the file being written removed) when this
/// is dropped — also when the future making the copy is dropped midway.
struct Arriving<'n> {
    node: &'n LocalNode,
    name: ModelName,
    tier: Tier,
    /// The cache file being written, for the disk tier.
    path: Option<PathBuf>,
    done: bool,
}

impl Arriving<'_> {
    /// The copy is in place: its room stays taken.
    fn arrived(mut self) {
        self.done = true;
    }
}

impl Drop for Arriving<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut tiers = lock(&self.node.inner.tiers);
        match self.tier {
            Tier::Ram => {
                tiers.drop_ram(&self.name);
            }
            _ => {
                tiers.drop_disk(&self.name);
                tiers.unpin(&self.name);
            }
        }
        drop(tiers);
        if let Some(path) = &self.path {
            fetch::remove_unfinished(path);
        }
    }
}

/// The model a cache file belongs to: its name is `<model>-<12 hex>.<ext>`.
fn cache_owner(file_name: &str) -> Option<ModelName> {
    let (stem, _) = file_name.rsplit_once('.')?;
    let (model, digest) = stem.rsplit_once('-')?;
    if digest.len() != 12 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    ModelName::parse(model).ok()
}

/// Deletes files the disk tier gave up.
fn remove_evicted(paths: Vec<PathBuf>) {
    for p in paths {
        tracing::info!(file = %p.display(), "Disk tier full; removing the least recently used artifact");
        fetch::remove(&p);
    }
}
