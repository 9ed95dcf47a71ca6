//! The manager task: its state, its loop, and every decision it makes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use greenthread_core::{ModelName, ModelState, NodeError, NodeId, StageReport, Tier, WakeReport};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use super::door::{Door, Doors};
use super::inbox::Inbox;
use super::{
    AcquireError, Cause, Lease, ManagedModel, ManagerConfig, ManagerStatus, NodeHandle, Observer, SCALE_UP_IN_FLIGHT,
    SleepOutcome, TransitionEvent, UNREACHABLE_PASSED_OVER_FOR,
};
use crate::placement::Placement;

mod node_ops;
mod specs;
mod views;

pub(super) enum Command {
    Acquire {
        model: ModelName,
        avoid: Vec<NodeId>,
        reply: oneshot::Sender<Result<Lease, AcquireError>>,
    },
    /// A lease given back to a replica that is closed or watched, or a
    /// load that may call for another replica: decide again.
    Recheck,
    AddNode(NodeHandle),
    RemoveNode(NodeId),
    Staged {
        model: ModelName,
        node: NodeId,
        result: Result<StageReport, NodeError>,
    },
    Woke {
        model: ModelName,
        node: NodeId,
        result: Result<WakeReport, NodeError>,
    },
    Slept {
        model: ModelName,
        node: NodeId,
        result: Result<Tier, NodeError>,
    },
    Sleep {
        model: ModelName,
        reply: oneshot::Sender<Result<SleepOutcome, AcquireError>>,
    },
    Status(oneshot::Sender<ManagerStatus>),
    WhenStaged(oneshot::Sender<()>),
    Upsert(ManagedModel),
    Remove(ModelName),
    /// A replica's engine stopped on its own (a crash): the node reports it.
    ReplicaFailed {
        model: ModelName,
        node: NodeId,
        reason: String,
    },
}

/// A change to a model that waits until none of its replicas holds the device.
enum Pending {
    /// A spec the engine must load afresh (another artifact, context, template).
    Respec(greenthread_core::ModelSpec),
    /// The model is gone: no new requests; it leaves once its replicas have slept.
    Remove,
}

struct Waiter {
    reply: oneshot::Sender<Result<Lease, AcquireError>>,
    since: Instant,
    avoid: Vec<NodeId>,
}

/// One model on one node.
struct Replica {
    state: ModelState,
    /// When it entered `state`.
    since: Instant,
    /// Its leases out, their use, and whether callers may lease it
    /// without this task.
    door: Arc<Door>,
    resident_since: Option<Instant>,
    /// A node operation for it is under way.
    busy: bool,
    last_wake: Option<WakeReport>,
    /// Why it is draining, for the event when it has slept.
    sleep_cause: Option<Cause>,
}

impl Replica {
    fn new(state: ModelState) -> Self {
        Self {
            state,
            since: Instant::now(),
            door: Arc::new(Door::new()),
            resident_since: None,
            busy: false,
            last_wake: None,
            sleep_cause: None,
        }
    }

    fn in_flight(&self) -> u32 {
        self.door.leases()
    }
}

impl Drop for Replica {
    /// A replica that is gone takes no more leases (those out end as they will).
    fn drop(&mut self) {
        self.door.set_open(false);
    }
}

struct Model {
    spec: greenthread_core::ModelSpec,
    /// Device bytes one replica needs.
    footprint: u64,
    waiters: Vec<Waiter>,
    replicas: BTreeMap<NodeId, Replica>,
    pending: Option<Pending>,
}

impl Model {
    fn on_device(&self) -> usize {
        self.replicas.values().filter(|r| r.state.on_device()).count()
    }

    fn serving(&self) -> impl Iterator<Item = (&NodeId, &Replica)> {
        self.replicas.iter().filter(|(_, r)| r.state == ModelState::Serving && !r.busy)
    }

    fn starting(&self) -> bool {
        self.replicas.values().any(|r| matches!(r.state, ModelState::Fetching | ModelState::Waking { .. }))
    }

    fn oldest_waiter(&self) -> Option<&Waiter> {
        self.waiters.iter().min_by_key(|w| w.since)
    }

    fn last_used(&self) -> Option<Instant> {
        self.replicas.values().filter_map(|r| r.door.last_used()).max()
    }
}

struct Node {
    handle: NodeHandle,
    /// Where this node holds each model's weights when not on its device.
    weights: BTreeMap<ModelName, Tier>,
    /// When an operation last found it unreachable; cleared by the next
    /// operation that reaches it.
    unreachable_since: Option<Instant>,
}

impl Node {
    /// Whether placement and leases may use it at `now`.
    fn reachable(&self, now: Instant) -> bool {
        self.unreachable_since.is_none_or(|t| now.duration_since(t) >= UNREACHABLE_PASSED_OVER_FOR)
    }
}

pub(super) struct Actor {
    config: ManagerConfig,
    models: BTreeMap<ModelName, Model>,
    nodes: BTreeMap<NodeId, Node>,
    tx: Inbox,
    doors: Doors,
    events: broadcast::Sender<TransitionEvent>,
    observer: Arc<dyn Observer>,
    staged_waiters: Vec<oneshot::Sender<()>>,
}

impl Actor {
    pub(super) fn new(
        models: Vec<ManagedModel>,
        config: ManagerConfig,
        tx: Inbox,
        doors: Doors,
        events: broadcast::Sender<TransitionEvent>,
        observer: Arc<dyn Observer>,
    ) -> Self {
        let models = models
            .into_iter()
            .map(|m| {
                let name = m.spec.name.clone();
                (
                    name,
                    Model {
                        spec: m.spec,
                        footprint: m.device_bytes,
                        waiters: Vec::new(),
                        replicas: BTreeMap::new(),
                        pending: None,
                    },
                )
            })
            .collect();
        Self { config, models, nodes: BTreeMap::new(), tx, doors, events, observer, staged_waiters: Vec::new() }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Command>, nodes: Vec<NodeHandle>) {
        for node in nodes {
            self.add_node(node);
        }
        self.stage_everything();
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
            self.publish_doors();
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Acquire { model, avoid, reply } => self.on_acquire(model, avoid, reply),
            Command::Recheck => self.schedule_all(),
            Command::AddNode(node) => {
                self.add_node(node);
                self.schedule_all();
            }
            Command::RemoveNode(node) => {
                self.remove_node(&node);
                self.unseal(|_, n| *n == node);
            }
            Command::Staged { model, node, result } => self.on_staged(&model, &node, result),
            Command::Woke { model, node, result } => self.on_woke(&model, &node, result),
            Command::Slept { model, node, result } => self.on_slept(&model, &node, result),
            Command::Sleep { model, reply } => {
                let _ = reply.send(self.sleep_now(&model));
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::WhenStaged(reply) => {
                self.staged_waiters.push(reply);
                self.release_staged_waiters();
            }
            Command::Upsert(model) => {
                let name = model.spec.name.clone();
                self.upsert(model);
                self.unseal(|m, _| *m == name);
            }
            Command::Remove(name) => {
                self.remove_model(&name);
                self.unseal(|m, _| *m == name);
            }
            Command::ReplicaFailed { model, node, reason } => {
                let on_device = self.replica_mut(&model, &node).is_some_and(|r| r.state.on_device() && !r.busy);
                if on_device {
                    self.fail(&model, &node, reason);
                    self.schedule_all();
                }
                self.unseal(|m, n| *m == model && *n == node);
            }
        }
    }

    // ----- membership -----

    fn add_node(&mut self, handle: NodeHandle) {
        let id = handle.id.clone();
        // A node that rejoins starts over: whatever it held before is what it reports now.
        self.drop_replicas_on(&id);
        let mut weights = BTreeMap::new();
        for (model, tier) in &handle.holdings {
            let Some(m) = self.models.get_mut(model) else { continue };
            match tier {
                Tier::Device => {
                    let mut r = Replica::new(ModelState::Serving);
                    r.resident_since = Some(Instant::now());
                    m.replicas.insert(id.clone(), r);
                }
                Tier::Ram | Tier::Disk => {
                    weights.insert(model.clone(), *tier);
                    m.replicas.insert(id.clone(), Replica::new(ModelState::Sleeping { tier: *tier }));
                }
                Tier::Object => {}
            }
        }
        tracing::info!(node = %id, budget = handle.device_budget, "Node joined");
        self.nodes.insert(id, Node { handle, weights, unreachable_since: None });
    }

    fn remove_node(&mut self, id: &NodeId) {
        if self.nodes.remove(id).is_some() {
            tracing::warn!(node = %id, "Node lost; its models will be placed elsewhere");
            self.observer.node_lost(id);
        }
        self.drop_replicas_on(id);
        self.schedule_all();
    }

    fn drop_replicas_on(&mut self, id: &NodeId) {
        for m in self.models.values_mut() {
            m.replicas.remove(id);
        }
    }

    /// At start, every model's artifact goes to one node, so its first wake
    /// needs no fetch: the node placement would pick for it.
    fn stage_everything(&mut self) {
        let names: Vec<ModelName> = self.models.keys().cloned().collect();
        for name in names {
            self.stage_initial(&name);
        }
    }

    fn stage_initial(&mut self, name: &ModelName) {
        if self.models[name].replicas.is_empty()
            && let Placement::On { node, .. } = self.placement(name, 0, &[], Duration::ZERO)
        {
            self.start_stage(name, &node, Cause::Startup);
        }
    }

    // ----- requests -----

    fn on_acquire(
        &mut self,
        model: ModelName,
        avoid: Vec<NodeId>,
        reply: oneshot::Sender<Result<Lease, AcquireError>>,
    ) {
        let Some(m) = self.models.get_mut(&model).filter(|m| !matches!(m.pending, Some(Pending::Remove))) else {
            let _ = reply.send(Err(AcquireError::UnknownModel(model.to_string())));
            return;
        };
        m.waiters.push(Waiter { reply, since: Instant::now(), avoid });
        self.serve_waiters(&model);
        self.schedule(&model);
    }

    /// Hands every waiter that a serving replica can take a lease on the
    /// least busy such replica.
    fn serve_waiters(&mut self, name: &ModelName) {
        // A model whose spec is changing serves nothing until it has changed.
        let now = Instant::now();
        let unreachable: Vec<NodeId> =
            self.nodes.iter().filter(|(_, n)| !n.reachable(now)).map(|(id, _)| id.clone()).collect();
        let Some(m) = self.models.get_mut(name).filter(|m| m.pending.is_none()) else { return };
        let mut still_waiting = Vec::new();
        for waiter in std::mem::take(&mut m.waiters) {
            if waiter.reply.is_closed() {
                continue;
            }
            let best = m
                .replicas
                .iter_mut()
                .filter(|(n, r)| {
                    r.state == ModelState::Serving && !r.busy && !waiter.avoid.contains(n) && !unreachable.contains(n)
                })
                .min_by_key(|(_, r)| r.in_flight());
            match best {
                Some((node, replica)) => {
                    replica.door.enter();
                    let door = replica.door.clone();
                    let lease = Lease { model: name.clone(), node: node.clone(), door, tx: self.tx.clone() };
                    // A caller that gave up drops the lease inside the error, which releases it.
                    let _ = waiter.reply.send(Ok(lease));
                }
                None => still_waiting.push(waiter),
            }
        }
        m.waiters = still_waiting;
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let mut idle = Vec::new();
        for (name, m) in &self.models {
            let mut on_device = m.on_device();
            for (node, r) in &m.replicas {
                let idle_long = r.door.last_used().is_none_or(|t| now.duration_since(t) >= m.spec.scaling.idle_timeout)
                    && r.resident_since.is_some_and(|t| now.duration_since(t) >= m.spec.scaling.idle_timeout);
                if r.state == ModelState::Serving
                    && !r.busy
                    && r.in_flight() == 0
                    && m.waiters.is_empty()
                    && on_device > m.spec.scaling.min_replicas as usize
                    && idle_long
                {
                    idle.push((name.clone(), node.clone()));
                    on_device -= 1;
                }
            }
        }
        for (name, node) in idle {
            self.start_sleep(&name, &node, Cause::Idle);
        }
        for m in self.models.values_mut() {
            m.waiters.retain(|w| !w.reply.is_closed());
        }
        self.schedule_all();
    }

    /// An operator's sleep: every serving replica without requests goes to
    /// sleep, except the `min_replicas` the model keeps awake.
    fn sleep_now(&mut self, name: &ModelName) -> Result<SleepOutcome, AcquireError> {
        let m = self.models.get(name).ok_or_else(|| AcquireError::UnknownModel(name.to_string()))?;
        let mut outcome = SleepOutcome::default();
        let mut may_sleep = m.on_device().saturating_sub(m.spec.scaling.min_replicas as usize);
        let mut chosen = Vec::new();
        for (node, r) in m.serving() {
            if r.in_flight() > 0 {
                outcome.busy += 1;
            } else if may_sleep == 0 {
                outcome.kept_for_min += 1;
            } else {
                may_sleep -= 1;
                chosen.push(node.clone());
            }
        }
        for node in chosen {
            self.start_sleep(name, &node, Cause::Operator);
            outcome.sleeping += 1;
        }
        Ok(outcome)
    }

    /// Schedules every model that wants more device presence, oldest request first.
    fn schedule_all(&mut self) {
        self.retire_all();
        let mut wanting: Vec<(Option<Instant>, ModelName)> = self
            .models
            .iter()
            .filter(|(_, m)| self.wants_replica(m))
            .map(|(n, m)| (m.oldest_waiter().map(|w| w.since), n.clone()))
            .collect();
        wanting.sort_by_key(|(since, _)| *since);
        for (_, name) in wanting {
            self.serve_waiters(&name);
            self.schedule(&name);
        }
    }

    /// Whether `m` needs another replica now: requests no serving replica can
    /// take, fewer replicas than `min_replicas`, or more load than its
    /// replicas absorb (up to `max_replicas`).
    fn wants_replica(&self, m: &Model) -> bool {
        if m.pending.is_some() {
            return false;
        }
        let on_device = m.on_device() as u32;
        if on_device < m.spec.scaling.min_replicas {
            return true;
        }
        if !m.waiters.is_empty() {
            return true;
        }
        let serving: Vec<&Replica> = m.serving().map(|(_, r)| r).collect();
        let load: u32 = serving.iter().map(|r| r.in_flight()).sum();
        !serving.is_empty()
            && on_device < m.spec.scaling.max_replicas
            && load >= SCALE_UP_IN_FLIGHT * serving.len() as u32
            && self.nodes.len() > serving.len()
    }

    /// Moves `name` one step towards another replica.
    fn schedule(&mut self, name: &ModelName) {
        let Some(m) = self.models.get_mut(name) else { return };
        m.waiters.retain(|w| !w.reply.is_closed());
        let m = &self.models[name];
        if !self.wants_replica(m) || m.starting() {
            return;
        }
        // A failed replica is retried only for a request, not in a loop for min_replicas.
        let failed_only =
            m.waiters.is_empty() && m.replicas.values().any(|r| matches!(r.state, ModelState::Failed { .. }));
        if failed_only {
            return;
        }
        let avoid: Vec<NodeId> = m.oldest_waiter().map(|w| w.avoid.clone()).unwrap_or_default();
        let waited = m.oldest_waiter().map_or(Duration::ZERO, |w| Instant::now().duration_since(w.since));
        match self.placement(name, self.models[name].footprint, &avoid, waited) {
            Placement::On { node, victims } => {
                if victims.is_empty() {
                    self.stage_or_wake(name, &node);
                } else {
                    for victim in victims {
                        tracing::info!(model = %victim, node = %node, for_model = %name, "Preempting to make device room");
                        self.start_sleep(&victim, &node, Cause::Preempted { by: name.clone() });
                    }
                }
            }
            Placement::Wait => {}
            Placement::TooLarge { needed } => {
                let error = AcquireError::TooLarge { model: name.to_string(), needed };
                self.fail_waiters(name, &error);
            }
        }
    }

    /// Stages `name` on `node` if it is not there yet, else wakes it there
    /// once the node's device really has room (drains may still be finishing).
    fn stage_or_wake(&mut self, name: &ModelName, node: &NodeId) {
        let state = self.models[name].replicas.get(node).map(|r| r.state.clone());
        match state {
            None
            | Some(ModelState::Absent | ModelState::Failed { .. } | ModelState::Sleeping { tier: Tier::Object }) => {
                self.start_stage(name, node, Cause::Request);
            }
            Some(s) if s.can_wake() => {
                let budget = self.nodes.get(node).map_or(0, |n| n.handle.device_budget);
                if budget.saturating_sub(self.device_used(node)) >= self.models[name].footprint {
                    self.start_wake(name, node);
                }
            }
            _ => {}
        }
    }

    /// Opens the doors of the replicas callers may lease without this task
    /// (serving, idle of node operations, on a reachable node, of a model not
    /// changing), closes the others, and publishes them. While any model
    /// waits, every door says when it falls idle: that replica's sleep may
    /// make the room the waiting model needs.
    fn publish_doors(&self) {
        let now = Instant::now();
        let waiting = self.models.values().any(|m| !m.waiters.is_empty());
        for (name, m) in &self.models {
            for (node, r) in &m.replicas {
                let reachable = self.nodes.get(node).is_some_and(|n| n.reachable(now));
                r.door.set_open(r.state == ModelState::Serving && !r.busy && reachable && m.pending.is_none());
                r.door.watch(waiting);
            }
            self.doors.publish(name, m.replicas.iter().map(|(node, r)| (node.clone(), r.door.clone())));
        }
        self.doors.retain(|name| self.models.contains_key(name));
    }

    /// Unseals the doors a caller sealed for a change this task has now made.
    fn unseal(&self, which: impl Fn(&ModelName, &NodeId) -> bool) {
        for (name, m) in &self.models {
            m.replicas.iter().filter(|(node, _)| which(name, node)).for_each(|(_, r)| r.door.unseal());
        }
    }

    fn release_staged_waiters(&mut self) {
        let fetching = self.models.values().any(|m| m.replicas.values().any(|r| r.state == ModelState::Fetching));
        if fetching {
            return;
        }
        for w in self.staged_waiters.drain(..) {
            let _ = w.send(());
        }
    }
}
