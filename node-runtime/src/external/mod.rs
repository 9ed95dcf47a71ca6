//! Models served by an engine in a process of its own — llama.cpp's
//! `llama-server`, vLLM, SGLang or any OpenAI-compatible server: started on
//! a loopback port the node picks, ready when its health path answers 200,
//! put to sleep with a CUDA checkpoint where the driver has one (the
//! process lives on without device memory), with vLLM's own sleep where
//! asked, or else by stopping it; a crash is reported with the engine's last
//! words and the next start waits a backoff.

pub mod checkpoint;
pub mod fit;
pub mod gpu;
pub mod logs;
pub mod probe;
pub mod process;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use greenthread_core::engine::{EngineSpec, Launch, Placeholders, SleepMode};
use greenthread_core::{ChatMessage, ModelName, ModelSpec};

use self::checkpoint::{CudaCheckpoint, ProcessState};
use self::logs::LogRing;
use self::process::{EngineProcess, STOP_GRACE};
pub use crate::engine::EngineEndpoint;
use crate::engine::{GenerateRequest, GenerationStream, ModelInfo, ModelInstance, ServedModel, WeightSource};
use crate::{Error, Result};

/// Lines of the engine's output a failure quotes.
pub const FAILURE_LINES: usize = 20;
/// How long a checkpoint waits for the engine's CUDA work in flight.
const LOCK_TIMEOUT_MS: u32 = 10_000;
/// How often readiness and liveness are looked at.
const POLL: Duration = Duration::from_millis(50);
/// Longest wait before restarting an engine that keeps crashing.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Told when an engine exits without being asked to: the model and why.
pub type ExitReporter = Arc<dyn Fn(&ModelName, String) + Send + Sync>;

/// How a sleeping engine's process holds on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dormant {
    /// The device memory of these processes of its group is in CUDA
    /// checkpoints in host memory.
    Checkpointed(Vec<u32>),
    /// vLLM's own sleep.
    EngineSleep,
}

enum Run {
    Stopped,
    Running { process: Arc<EngineProcess>, addr: SocketAddr, dormant: Option<Dormant> },
}

/// Consecutive crashes, for the backoff of the next start.
#[derive(Default)]
struct Crashes {
    count: u32,
    last: Option<Instant>,
}

impl Crashes {
    /// 0.5 s after the first crash, doubling to [`MAX_BACKOFF`]; a minute
    /// without one forgives the past.
    fn backoff(&self) -> Duration {
        match self.last {
            Some(at) if self.count > 0 && at.elapsed() < Duration::from_secs(60) => {
                let wait = Duration::from_millis(500).saturating_mul(1 << (self.count - 1).min(6));
                wait.min(MAX_BACKOFF).saturating_sub(at.elapsed())
            }
            _ => Duration::ZERO,
        }
    }
}

/// A model an external engine serves on this node.
pub struct ExternalModel {
    inner: Arc<Shared>,
}

struct Shared {
    name: ModelName,
    launch: Launch,
    /// The staged artifact the engine reads (`{artifact}`).
    artifact: PathBuf,
    info: ModelInfo,
    logs: LogRing,
    run: Mutex<Run>,
    crashes: Mutex<Crashes>,
    on_exit: Option<ExitReporter>,
    /// The device's memory, where the node has a GPU.
    device_total: Option<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ExternalModel {
    /// A model of `spec`'s external engine over the staged `artifact`; nothing runs yet.
    ///
    /// # Errors
    /// [`Error::Unservable`] for a spec whose engine is the builtin one.
    pub fn new(
        spec: &ModelSpec,
        artifact: PathBuf,
        on_exit: Option<ExitReporter>,
        device_total: Option<u64>,
    ) -> Result<Self> {
        let mut launch =
            spec.engine.launch().ok_or_else(|| Error::Unservable("the builtin engine is not external".into()))?;
        if let (EngineSpec::LlamaServer(_), Some(declared)) = (&spec.engine, launch.device_memory)
            && !launch.argv.iter().any(|a| a == "-c" || a == "--ctx-size")
            && artifact.is_file()
        {
            // llama.cpp's memory is its weights and the context's KV cache.
            let context = fit::llama_context(&artifact, declared.bytes()).map_err(Error::Unservable)?;
            launch.argv.extend(["-c".to_owned(), context.to_string()]);
        }
        let declared = launch.device_memory.map(|m| m.bytes());
        let on_disk = std::fs::metadata(&artifact).map(|m| if m.is_file() { m.len() } else { 0 }).unwrap_or(0);
        let info = ModelInfo {
            kind: greenthread_core::ModelKind::Chat,
            architecture: spec.engine.kind().to_owned(),
            description: None,
            context_length: spec.context_length.unwrap_or(0) as usize,
            vocab_size: 0,
            weight_bytes: usize::try_from(declared.unwrap_or(on_disk)).unwrap_or(usize::MAX),
            has_chat_template: true,
            tool_calls: true,
            embedding_dimensions: None,
        };
        Ok(Self {
            inner: Arc::new(Shared {
                name: spec.name.clone(),
                launch,
                artifact,
                info,
                logs: LogRing::default(),
                run: Mutex::new(Run::Stopped),
                crashes: Mutex::new(Crashes::default()),
                on_exit,
                device_total,
            }),
        })
    }

    /// The engine's last `n` lines of output, oldest first.
    pub fn logs(&self, n: usize) -> Vec<String> {
        self.inner.logs.last(n)
    }

    /// The engine's process id while it runs (awake or checkpointed).
    pub fn pid(&self) -> Option<u32> {
        match &*lock(&self.inner.run) {
            Run::Running { process, .. } => Some(process.pid()),
            Run::Stopped => None,
        }
    }

    fn start(&self) -> Result<()> {
        let backoff = lock(&self.inner.crashes).backoff();
        if !backoff.is_zero() {
            tracing::info!(model = %self.inner.name, ms = backoff.as_millis() as u64, "Engine crashed recently; waiting before restarting it");
            std::thread::sleep(backoff);
        }
        let port = free_port().map_err(|e| Error::Engine(format!("no free loopback port: {e}")))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let argv = self.inner.launch.render(&Placeholders {
            artifact: &self.inner.artifact,
            host: "127.0.0.1",
            port,
            model: self.inner.name.as_str(),
            device_total: self.inner.device_total,
        });
        tracing::info!(model = %self.inner.name, program = %argv[0], %port, "Starting engine");
        self.inner.logs.push(&format!("greenthread: starting {} on {addr}", argv[0]));
        let process = EngineProcess::spawn(&argv, &self.inner.launch.env, &self.inner.logs)
            .map_err(|e| Error::Engine(format!("cannot start {}: {e}", argv[0])))?;
        let process = Arc::new(process);
        if let Err(e) = self.wait_ready(&process, addr) {
            process.stop(STOP_GRACE);
            return Err(e);
        }
        *lock(&self.inner.run) = Run::Running { process: process.clone(), addr, dormant: None };
        watch(&self.inner, process);
        Ok(())
    }

    /// Polls the health path until it answers 200, the process exits or
    /// the readiness timeout passes.
    fn wait_ready(&self, process: &EngineProcess, addr: SocketAddr) -> Result<()> {
        let deadline = Instant::now() + self.inner.launch.ready_timeout;
        loop {
            if let Some(how) = process.exited() {
                process.drain_output(Duration::from_millis(500));
                return Err(Error::Engine(format!("the engine exited ({how}) before it was ready: {}", self.tail())));
            }
            if probe::status(addr, "GET", &self.inner.launch.health, Duration::from_secs(2)).is_ok_and(|s| s == 200) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Engine(format!(
                    "the engine was not ready within {:?}: {}",
                    self.inner.launch.ready_timeout,
                    self.tail()
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    fn tail(&self) -> String {
        tail(&self.inner.logs)
    }

    /// Stops the engine's process, if it runs.
    fn stop(&self) {
        let previous = std::mem::replace(&mut *lock(&self.inner.run), Run::Stopped);
        if let Run::Running { process, .. } = previous {
            tracing::info!(model = %self.inner.name, pid = process.pid(), "Stopping engine");
            process.stop(STOP_GRACE);
        }
    }

    /// Puts a running engine to sleep without stopping it, where it can be.
    fn hold(&self, process: &EngineProcess, addr: SocketAddr) -> Option<Dormant> {
        match self.inner.launch.sleep {
            SleepMode::Stop => None,
            SleepMode::Engine => match probe::status(addr, "POST", "/sleep?level=1", Duration::from_secs(120)) {
                Ok(200) => Some(Dormant::EngineSleep),
                other => {
                    tracing::warn!(model = %self.inner.name, answer = ?other.map_err(|e| e.to_string()), "The engine's own sleep failed; stopping it");
                    None
                }
            },
            SleepMode::Auto => match checkpoint_group(&process.group()) {
                Ok(pids) => Some(Dormant::Checkpointed(pids)),
                Err(why) => {
                    tracing::info!(model = %self.inner.name, %why, "No CUDA checkpoint; stopping the engine to sleep");
                    None
                }
            },
        }
    }
}

/// Checkpoints every process of an engine's group that has a CUDA context
/// (vLLM's model runs in a child), all or none.
///
/// # Errors
/// Why not: no driver or API, no CUDA process in the group, or a failed
/// checkpoint (those already taken are restored).
fn checkpoint_group(group: &[u32]) -> std::result::Result<Vec<u32>, String> {
    let api = CudaCheckpoint::get().map_err(|e| e.to_string())?;
    let cuda: Vec<u32> =
        group.iter().copied().filter(|pid| matches!(api.state(*pid), Ok(Some(ProcessState::Running)))).collect();
    if cuda.is_empty() {
        return Err("the engine has no process with a CUDA context".to_owned());
    }
    for (done, pid) in cuda.iter().enumerate() {
        if let Err(e) = api.suspend(*pid, LOCK_TIMEOUT_MS) {
            for taken in &cuda[..done] {
                let _ = api.resume(*taken);
            }
            return Err(e.to_string());
        }
    }
    Ok(cuda)
}

/// The last lines of an engine's output, as one line for a failure's reason.
fn tail(logs: &LogRing) -> String {
    let lines = logs.last(FAILURE_LINES);
    if lines.is_empty() { "(it wrote nothing)".to_owned() } else { lines.join(" | ") }
}

/// Reports the engine's exit if it was not asked to stop: the model is
/// then failed, and its next start waits a backoff.
fn watch(shared: &Arc<Shared>, process: Arc<EngineProcess>) {
    let shared = Arc::downgrade(shared);
    let spawned = std::thread::Builder::new().name("engine-watch".into()).spawn(move || {
        loop {
            std::thread::sleep(POLL * 2);
            let Some(shared) = shared.upgrade() else { return };
            let still_ours = matches!(&*lock(&shared.run), Run::Running { process: p, .. } if Arc::ptr_eq(p, &process));
            if !still_ours {
                return;
            }
            let Some(how) = process.exited() else { continue };
            process.drain_output(Duration::from_millis(500));
            *lock(&shared.run) = Run::Stopped;
            {
                let mut crashes = lock(&shared.crashes);
                crashes.count += 1;
                crashes.last = Some(Instant::now());
            }
            let reason = format!("the engine exited unexpectedly ({how}): {}", tail(&shared.logs));
            tracing::error!(model = %shared.name, %reason, "Engine crashed");
            if let Some(report) = &shared.on_exit {
                report(&shared.name, reason);
            }
            return;
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "Could not watch an engine");
    }
}

/// A loopback port free now, for the engine to listen on.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// What a request that reaches the model here rather than its engine gets:
/// the engine is between a crash and its restart.
fn not_here() -> Error {
    Error::Engine("the model's engine is not running; retry shortly".into())
}

impl ModelInstance for ExternalModel {
    fn info(&self) -> &ModelInfo {
        &self.inner.info
    }

    fn chat_prompt(&self, _messages: &[ChatMessage], _tools: Option<&serde_json::Value>) -> Result<Vec<u32>> {
        Err(not_here())
    }

    fn text_prompt(&self, _text: &str) -> Vec<u32> {
        Vec::new()
    }

    fn generate(&self, _request: GenerateRequest) -> Result<GenerationStream> {
        Err(not_here())
    }

    fn endpoint(&self) -> Option<EngineEndpoint> {
        match &*lock(&self.inner.run) {
            Run::Running { addr, dormant: None, .. } => {
                Some(EngineEndpoint { base: format!("http://{addr}"), model: self.inner.name.to_string() })
            }
            _ => None,
        }
    }
}

impl ServedModel for ExternalModel {
    /// Starts the engine (or restores the one asleep) and waits until it is ready.
    fn wake(&self, _source: WeightSource<'_>) -> Result<()> {
        let dormant = match &*lock(&self.inner.run) {
            Run::Running { addr, dormant, .. } => Some((*addr, dormant.clone())),
            Run::Stopped => None,
        };
        let Some((addr, dormant)) = dormant else { return self.start() };
        let resumed = match dormant {
            None => return Ok(()),
            Some(Dormant::Checkpointed(pids)) => CudaCheckpoint::get()
                .and_then(|api| pids.iter().try_for_each(|pid| api.resume(*pid)))
                .map_err(|e| e.to_string()),
            Some(Dormant::EngineSleep) => match probe::status(addr, "POST", "/wake_up", Duration::from_secs(120)) {
                Ok(200) => Ok(()),
                other => Err(format!("/wake_up answered {other:?}")),
            },
        };
        match resumed {
            Ok(()) => {
                if let Run::Running { dormant, .. } = &mut *lock(&self.inner.run) {
                    *dormant = None;
                }
                Ok(())
            }
            Err(why) => {
                tracing::warn!(model = %self.inner.name, %why, "The sleeping engine could not be woken; starting it afresh");
                self.stop();
                self.start()
            }
        }
    }

    fn sleep(&self) -> Result<()> {
        let running = match &*lock(&self.inner.run) {
            Run::Running { process, addr, dormant: None } => Some((process.clone(), *addr)),
            _ => None,
        };
        let Some((process, addr)) = running else { return Ok(()) };
        match self.hold(&process, addr) {
            Some(how) => {
                if let Run::Running { dormant, .. } = &mut *lock(&self.inner.run) {
                    *dormant = Some(how);
                }
            }
            None => self.stop(),
        }
        Ok(())
    }

    fn is_awake(&self) -> bool {
        matches!(&*lock(&self.inner.run), Run::Running { dormant: None, .. })
    }

    /// The declared device memory; else what the engine's processes hold
    /// on the GPU (NVML), or, on a node without one, resident.
    fn device_bytes(&self) -> usize {
        let run = lock(&self.inner.run);
        let Run::Running { process, dormant: None, .. } = &*run else { return 0 };
        let bytes = self.inner.launch.device_memory.map(|m| m.bytes()).or_else(|| match self.inner.device_total {
            Some(_) => gpu::used_by(&process.group()),
            None => process.resident_bytes(),
        });
        usize::try_from(bytes.unwrap_or(0)).unwrap_or(usize::MAX)
    }
}

impl Drop for ExternalModel {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests;
