//! The model manager: one task that owns every model's lifecycle on a node
//! and decides, request by request, which models hold device memory.
//!
//! Requests [`ModelManager::acquire`] a lease: a serving model answers at
//! once; a sleeping one is woken once for all its waiters (single flight),
//! after other models are put to sleep if the device is full (see
//! [`crate::preemption`]). Idle models go to sleep after their
//! `idle_timeout`. Node operations run as separate tasks and report back;
//! the manager's own state changes only in its loop.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use greenthread_core::{ModelName, ModelSpec, ModelState, NodeControl, NodeError, StageReport, Tier, WakeReport};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use crate::preemption::{Decision, DeviceView, PreemptionRules, Resident, WakeRequest, decide};

/// How the manager runs.
#[derive(Debug, Clone, Copy)]
pub struct ManagerConfig {
    /// Device bytes the models may hold together.
    pub device_budget: u64,
    /// Longest a request waits for its model to wake before it is answered
    /// with "retry later".
    pub wake_timeout: Duration,
    pub rules: PreemptionRules,
    /// How often idle timeouts and waiting wakes are re-checked. Small next
    /// to idle timeouts and the preemption deadlines, so they fire on time.
    pub tick: Duration,
}

impl ManagerConfig {
    pub fn new(device_budget: u64) -> Self {
        Self {
            device_budget,
            wake_timeout: Duration::from_secs(60),
            rules: PreemptionRules::default(),
            tick: Duration::from_millis(200),
        }
    }
}

/// A model to manage.
#[derive(Debug, Clone)]
pub struct ManagedModel {
    pub spec: ModelSpec,
    /// Device bytes it needs awake, until staging reports the real figure.
    pub device_bytes: u64,
}

/// Why a request got no model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AcquireError {
    #[error("model {0} is not served here")]
    UnknownModel(String),
    #[error("model {model} did not wake within {waited:?}; retry later")]
    Timeout { model: String, waited: Duration, retry_after: Duration },
    #[error("model {model} cannot be served: {reason}")]
    Failed { model: String, reason: String },
    #[error("model {model} needs {needed} bytes of device memory but the device budget is {budget}")]
    TooLarge { model: String, needed: u64, budget: u64 },
    #[error("the model manager has stopped")]
    Stopped,
}

/// Why a model changed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    Startup,
    Request,
    Idle,
    Preempted { by: ModelName },
    Failure,
}

impl Cause {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Request => "request",
            Self::Idle => "idle",
            Self::Preempted { .. } => "preempted",
            Self::Failure => "failure",
        }
    }
}

/// One state change of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionEvent {
    pub model: ModelName,
    pub from: ModelState,
    pub to: ModelState,
    /// Time spent in `from`.
    pub after: Duration,
    pub cause: Cause,
}

/// Receives what the manager does, for metrics.
pub trait Observer: Send + Sync {
    fn transition(&self, _event: &TransitionEvent) {}
    fn woke(&self, _model: &ModelName, _report: &WakeReport) {}
    fn wake_timed_out(&self, _model: &ModelName) {}
}

/// An observer that ignores everything.
pub struct NoObserver;
impl Observer for NoObserver {}

/// A model and the manager's view of it.
#[derive(Debug, Clone)]
pub struct ModelStatus {
    pub name: ModelName,
    pub project: ModelName,
    pub state: ModelState,
    /// Replicas on a device: 1 while waking, serving or draining.
    pub replicas: u32,
    pub device_bytes: u64,
    /// Device bytes it needs awake (known once staged).
    pub footprint_bytes: u64,
    pub in_flight: u32,
    /// Time since the model was last used, if ever.
    pub idle_for: Option<Duration>,
    pub last_wake: Option<WakeReport>,
    /// Requests waiting for it to wake.
    pub waiting: usize,
}

#[derive(Debug, Clone)]
pub struct ManagerStatus {
    pub device_budget: u64,
    pub device_used: u64,
    pub models: Vec<ModelStatus>,
}

/// Permission to use a serving model. While it lives the model counts a
/// request in flight and will not be put to sleep.
#[derive(Debug)]
pub struct Lease {
    model: ModelName,
    tx: mpsc::UnboundedSender<Command>,
}

impl Lease {
    pub fn model(&self) -> &ModelName {
        &self.model
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // If the manager is gone there is nothing left to release.
        let _ = self.tx.send(Command::Release(self.model.clone()));
    }
}

/// A handle to the manager task; cheap to clone.
#[derive(Clone)]
pub struct ModelManager {
    tx: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<TransitionEvent>,
    observer: Arc<dyn Observer>,
    wake_timeout: Duration,
    retry_after: Duration,
}

enum Command {
    Acquire { model: ModelName, reply: oneshot::Sender<Result<Lease, AcquireError>> },
    Release(ModelName),
    Staged { model: ModelName, result: Result<StageReport, NodeError> },
    Woke { model: ModelName, result: Result<WakeReport, NodeError> },
    Slept { model: ModelName, result: Result<Tier, NodeError> },
    Status(oneshot::Sender<ManagerStatus>),
    WhenStaged(oneshot::Sender<()>),
}

impl ModelManager {
    /// Starts the manager task for `models` on `node`; every model starts
    /// staging at once, and models with `min_replicas: 1` wake once staged.
    pub fn start(
        node: Arc<dyn NodeControl>,
        models: Vec<ManagedModel>,
        config: ManagerConfig,
        observer: Arc<dyn Observer>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(1024);
        let now = Instant::now();
        let entries = models
            .into_iter()
            .map(|m| {
                let entry = Entry {
                    device_bytes: m.device_bytes,
                    state: ModelState::Absent,
                    since: now,
                    in_flight: 0,
                    last_used: None,
                    resident_since: None,
                    waiters: Vec::new(),
                    busy: false,
                    last_wake: None,
                    sleep_cause: None,
                    spec: m.spec,
                };
                (entry.spec.name.clone(), entry)
            })
            .collect();
        let actor = Actor {
            node,
            config,
            entries,
            tx: tx.clone(),
            events: events.clone(),
            observer: observer.clone(),
            staged_waiters: Vec::new(),
        };
        tokio::spawn(actor.run(rx));
        Self { tx, events, observer, wake_timeout: config.wake_timeout, retry_after: config.rules.force_after }
    }

    /// A lease on `model`, waking it if needed; waits at most the wake timeout.
    ///
    /// # Errors
    /// [`AcquireError`]: unknown model, timeout (retry later), a failed
    /// stage or wake, a model too large for the device, or a stopped manager.
    pub async fn acquire(&self, model: &ModelName) -> Result<Lease, AcquireError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Acquire { model: model.clone(), reply }).map_err(|_| AcquireError::Stopped)?;
        match tokio::time::timeout(self.wake_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(AcquireError::Stopped),
            Err(_) => {
                self.observer.wake_timed_out(model);
                Err(AcquireError::Timeout {
                    model: model.to_string(),
                    waited: self.wake_timeout,
                    retry_after: self.retry_after,
                })
            }
        }
    }

    /// Every model's state and the device's use.
    ///
    /// # Errors
    /// [`AcquireError::Stopped`] when the manager task is gone.
    pub async fn status(&self) -> Result<ManagerStatus, AcquireError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Status(reply)).map_err(|_| AcquireError::Stopped)?;
        rx.await.map_err(|_| AcquireError::Stopped)
    }

    /// Resolves once no model is fetching: the start-up staging is over.
    pub async fn staged(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::WhenStaged(reply)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Every state change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<TransitionEvent> {
        self.events.subscribe()
    }
}

struct Waiter {
    reply: oneshot::Sender<Result<Lease, AcquireError>>,
    since: Instant,
}

struct Entry {
    spec: ModelSpec,
    device_bytes: u64,
    state: ModelState,
    /// When it entered `state`.
    since: Instant,
    in_flight: u32,
    last_used: Option<Instant>,
    resident_since: Option<Instant>,
    waiters: Vec<Waiter>,
    /// A node operation for it is under way.
    busy: bool,
    last_wake: Option<WakeReport>,
    /// Why it is draining, for the event when it has slept.
    sleep_cause: Option<Cause>,
}

impl Entry {
    fn wants_device(&self) -> bool {
        !self.waiters.is_empty() || self.spec.scaling.min_replicas >= 1
    }

    fn oldest_waiter(&self) -> Option<Instant> {
        self.waiters.iter().map(|w| w.since).min()
    }
}

struct Actor {
    node: Arc<dyn NodeControl>,
    config: ManagerConfig,
    entries: BTreeMap<ModelName, Entry>,
    tx: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<TransitionEvent>,
    observer: Arc<dyn Observer>,
    staged_waiters: Vec<oneshot::Sender<()>>,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let names: Vec<ModelName> = self.entries.keys().cloned().collect();
        for name in names {
            self.start_stage(&name, Cause::Startup);
        }
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = rx.recv() => match command {
                    Some(c) => self.handle(c),
                    None => return,
                },
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Acquire { model, reply } => self.on_acquire(model, reply),
            Command::Release(model) => {
                if let Some(e) = self.entries.get_mut(&model) {
                    e.in_flight = e.in_flight.saturating_sub(1);
                    e.last_used = Some(Instant::now());
                }
                self.schedule_all();
            }
            Command::Staged { model, result } => self.on_staged(&model, result),
            Command::Woke { model, result } => self.on_woke(&model, result),
            Command::Slept { model, result } => self.on_slept(&model, result),
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::WhenStaged(reply) => {
                self.staged_waiters.push(reply);
                self.release_staged_waiters();
            }
        }
    }

    fn on_acquire(&mut self, model: ModelName, reply: oneshot::Sender<Result<Lease, AcquireError>>) {
        let Some(e) = self.entries.get_mut(&model) else {
            let _ = reply.send(Err(AcquireError::UnknownModel(model.to_string())));
            return;
        };
        if e.state == ModelState::Serving {
            e.in_flight += 1;
            e.last_used = Some(Instant::now());
            let lease = Lease { model: model.clone(), tx: self.tx.clone() };
            // A caller that gave up drops the lease inside the error, which releases it.
            let _ = reply.send(Ok(lease));
            return;
        }
        e.waiters.push(Waiter { reply, since: Instant::now() });
        self.schedule(&model);
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let idle: Vec<ModelName> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.state == ModelState::Serving
                    && !e.busy
                    && e.in_flight == 0
                    && e.waiters.is_empty()
                    && e.spec.scaling.min_replicas == 0
                    && e.last_used.is_some_and(|t| now.duration_since(t) >= e.spec.scaling.idle_timeout)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in idle {
            self.start_sleep(&name, Cause::Idle);
        }
        for e in self.entries.values_mut() {
            e.waiters.retain(|w| !w.reply.is_closed());
        }
        self.schedule_all();
    }

    /// Schedules every model that wants the device, oldest request first.
    fn schedule_all(&mut self) {
        let mut wanting: Vec<(Option<Instant>, ModelName)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.wants_device() && !e.busy && e.state != ModelState::Serving)
            .map(|(n, e)| (e.oldest_waiter(), n.clone()))
            .collect();
        wanting.sort_by_key(|(since, _)| *since);
        for (_, name) in wanting {
            self.schedule(&name);
        }
    }

    /// Moves `name` one step towards serving its waiters.
    fn schedule(&mut self, name: &ModelName) {
        enum Step {
            Serve,
            Stage,
            Admit,
            Nothing,
        }
        let step = {
            let Some(e) = self.entries.get_mut(name) else { return };
            e.waiters.retain(|w| !w.reply.is_closed());
            if e.busy || !e.wants_device() {
                Step::Nothing
            } else {
                match &e.state {
                    ModelState::Serving => Step::Serve,
                    ModelState::Absent | ModelState::Sleeping { tier: Tier::Object } => Step::Stage,
                    // A failed model is retried for a request, not in a loop for min_replicas.
                    ModelState::Failed { .. } if !e.waiters.is_empty() => Step::Stage,
                    s if s.can_wake() => Step::Admit,
                    _ => Step::Nothing,
                }
            }
        };
        match step {
            Step::Serve => self.serve_waiters(name),
            Step::Stage => self.start_stage(name, Cause::Request),
            Step::Admit => self.admit(name),
            Step::Nothing => {}
        }
    }

    /// Wakes `name` if the device has room, or puts models to sleep to make room.
    fn admit(&mut self, name: &ModelName) {
        let now = Instant::now();
        let Some(e) = self.entries.get(name) else { return };
        let request = WakeRequest {
            model: name.to_string(),
            project: e.spec.project.to_string(),
            bytes: e.device_bytes,
            waited: e.oldest_waiter().map_or(Duration::ZERO, |t| now.duration_since(t)),
        };
        let on_device: Vec<(&ModelName, &Entry)> = self.entries.iter().filter(|(_, e)| e.state.on_device()).collect();
        let used: u64 = on_device.iter().map(|(_, e)| e.device_bytes).sum();
        // Models already draining free their bytes soon: leave them out of
        // the decision so they are not counted twice, but wait for them.
        let view = DeviceView {
            budget: self.config.device_budget,
            resident: on_device
                .iter()
                .filter(|(_, e)| e.state != ModelState::Draining)
                .map(|(n, e)| Resident {
                    model: n.to_string(),
                    project: e.spec.project.to_string(),
                    bytes: e.device_bytes,
                    in_flight: e.in_flight,
                    idle_for: e.last_used.map_or(Duration::MAX, |t| now.duration_since(t)),
                    resident_for: e.resident_since.map_or(Duration::ZERO, |t| now.duration_since(t)),
                    never_preempt: e.spec.scaling.never_preempt || e.spec.scaling.min_replicas >= 1,
                    settled: e.state == ModelState::Serving && !e.busy,
                })
                .collect(),
        };
        match decide(&view, &request, &self.config.rules) {
            Decision::Admit { victims } if victims.is_empty() => {
                if self.config.device_budget.saturating_sub(used) >= request.bytes {
                    self.start_wake(name);
                }
            }
            Decision::Admit { victims } => {
                for victim in victims {
                    if let Ok(v) = ModelName::parse(&victim) {
                        tracing::info!(model = %v, for_model = %name, "Preempting to make device room");
                        self.start_sleep(&v, Cause::Preempted { by: name.clone() });
                    }
                }
            }
            Decision::Wait => {}
            Decision::TooLarge { needed, budget } => {
                let error = AcquireError::TooLarge { model: name.to_string(), needed, budget };
                self.fail_waiters(name, &error);
            }
        }
    }

    fn start_stage(&mut self, name: &ModelName, cause: Cause) {
        if !self.transition(name, ModelState::Fetching, cause) {
            return;
        }
        self.spawn_op(name, |node, model, tx| async move {
            let result = node.stage(&model).await;
            let _ = tx.send(Command::Staged { model, result });
        });
    }

    fn start_wake(&mut self, name: &ModelName) {
        let Some(from) = self.entries.get(name).and_then(|e| e.state.tier()) else { return };
        if !self.transition(name, ModelState::Waking { from }, Cause::Request) {
            return;
        }
        self.spawn_op(name, |node, model, tx| async move {
            let result = node.wake(&model).await;
            let _ = tx.send(Command::Woke { model, result });
        });
    }

    fn start_sleep(&mut self, name: &ModelName, cause: Cause) {
        let Some(e) = self.entries.get(name) else { return };
        if e.state != ModelState::Serving || e.busy || e.in_flight > 0 {
            return;
        }
        let warm = e.spec.scaling.warm_tier;
        if !self.transition(name, ModelState::Draining, cause.clone()) {
            return;
        }
        if let Some(e) = self.entries.get_mut(name) {
            e.sleep_cause = Some(cause);
        }
        self.spawn_op(name, move |node, model, tx| async move {
            let result = node.sleep(&model, warm).await;
            let _ = tx.send(Command::Slept { model, result });
        });
    }

    /// Runs a node operation for `name` as its own task; it reports back
    /// through the command channel.
    fn spawn_op<F, Fut>(&mut self, name: &ModelName, op: F)
    where
        F: FnOnce(Arc<dyn NodeControl>, ModelName, mpsc::UnboundedSender<Command>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if let Some(e) = self.entries.get_mut(name) {
            e.busy = true;
        }
        tokio::spawn(op(self.node.clone(), name.clone(), self.tx.clone()));
    }

    fn on_staged(&mut self, name: &ModelName, result: Result<StageReport, NodeError>) {
        if let Some(e) = self.entries.get_mut(name) {
            e.busy = false;
            if let Ok(report) = &result {
                e.device_bytes = report.device_bytes;
            }
        }
        match result {
            Ok(report) => {
                self.transition(name, ModelState::Staged { tier: report.tier }, Cause::Startup);
                self.schedule(name);
            }
            Err(err) => self.fail(name, err.to_string()),
        }
        self.release_staged_waiters();
    }

    fn on_woke(&mut self, name: &ModelName, result: Result<WakeReport, NodeError>) {
        let Some(e) = self.entries.get_mut(name) else { return };
        e.busy = false;
        match result {
            Ok(report) => {
                e.device_bytes = report.device_bytes;
                e.last_wake = Some(report);
                e.resident_since = Some(Instant::now());
                self.observer.woke(name, &report);
                tracing::info!(model = %name, from = %report.from, ms = report.duration.as_millis() as u64, "Model woke");
                self.transition(name, ModelState::Serving, Cause::Request);
                self.serve_waiters(name);
            }
            Err(err) => self.fail(name, err.to_string()),
        }
        self.schedule_all();
    }

    fn on_slept(&mut self, name: &ModelName, result: Result<Tier, NodeError>) {
        let mut cause = Cause::Idle;
        if let Some(e) = self.entries.get_mut(name) {
            e.busy = false;
            e.resident_since = None;
            cause = e.sleep_cause.take().unwrap_or(Cause::Idle);
        }
        match result {
            Ok(tier) => {
                self.transition(name, ModelState::Sleeping { tier }, cause);
            }
            Err(err) => self.fail(name, err.to_string()),
        }
        self.schedule_all();
    }

    fn serve_waiters(&mut self, name: &ModelName) {
        let Some(e) = self.entries.get_mut(name) else { return };
        let now = Instant::now();
        for waiter in e.waiters.drain(..) {
            if waiter.reply.is_closed() {
                continue;
            }
            e.in_flight += 1;
            e.last_used = Some(now);
            let _ = waiter.reply.send(Ok(Lease { model: name.clone(), tx: self.tx.clone() }));
        }
    }

    fn fail(&mut self, name: &ModelName, reason: String) {
        tracing::error!(model = %name, %reason, "Model failed");
        self.transition(name, ModelState::Failed { reason: reason.clone() }, Cause::Failure);
        self.fail_waiters(name, &AcquireError::Failed { model: name.to_string(), reason });
    }

    fn fail_waiters(&mut self, name: &ModelName, error: &AcquireError) {
        if let Some(e) = self.entries.get_mut(name) {
            for waiter in e.waiters.drain(..) {
                let _ = waiter.reply.send(Err(error.clone()));
            }
        }
    }

    /// Moves `name` to `next` if the lifecycle allows it, recording the event.
    fn transition(&mut self, name: &ModelName, next: ModelState, cause: Cause) -> bool {
        let Some(e) = self.entries.get_mut(name) else { return false };
        match e.state.to(next) {
            Ok(next) => {
                let now = Instant::now();
                let event = TransitionEvent {
                    model: name.clone(),
                    from: std::mem::replace(&mut e.state, next.clone()),
                    to: next,
                    after: now.duration_since(e.since),
                    cause,
                };
                e.since = now;
                tracing::debug!(model = %name, from = %event.from, to = %event.to, ms = event.after.as_millis() as u64, cause = event.cause.as_str(), "Model state changed");
                self.observer.transition(&event);
                // Nobody listening is fine.
                let _ = self.events.send(event);
                true
            }
            Err(illegal) => {
                tracing::error!(model = %name, error = %illegal, "Refused a lifecycle transition");
                false
            }
        }
    }

    fn release_staged_waiters(&mut self) {
        if self.entries.values().any(|e| e.state == ModelState::Fetching || e.state == ModelState::Absent) {
            return;
        }
        for w in self.staged_waiters.drain(..) {
            let _ = w.send(());
        }
    }

    fn status(&self) -> ManagerStatus {
        let now = Instant::now();
        let models: Vec<ModelStatus> = self
            .entries
            .iter()
            .map(|(name, e)| ModelStatus {
                name: name.clone(),
                project: e.spec.project.clone(),
                state: e.state.clone(),
                replicas: u32::from(e.state.on_device()),
                device_bytes: if e.state.on_device() { e.device_bytes } else { 0 },
                footprint_bytes: e.device_bytes,
                in_flight: e.in_flight,
                idle_for: e.last_used.map(|t| now.duration_since(t)),
                last_wake: e.last_wake,
                waiting: e.waiters.len(),
            })
            .collect();
        ManagerStatus {
            device_budget: self.config.device_budget,
            device_used: models.iter().map(|m| m.device_bytes).sum(),
            models,
        }
    }
}

#[cfg(test)]
mod tests;
