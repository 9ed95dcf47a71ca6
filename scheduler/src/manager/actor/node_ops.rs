//! The node operations the manager starts (stage, wake, sleep) and what it
//! does with their results.

use std::future::Future;
use std::sync::Arc;

use greenthread_core::{ModelName, ModelState, NodeControl, NodeError, NodeId, StageReport, Tier, WakeReport};
use tokio::time::Instant;

use super::{Actor, Command, Replica};
use crate::manager::inbox::Inbox;
use crate::manager::{AcquireError, Cause, TransitionEvent};

impl Actor {
    pub(super) fn start_stage(&mut self, name: &ModelName, node: &NodeId, cause: Cause) {
        if !self.transition(name, node, ModelState::Fetching, cause) {
            return;
        }
        let spec = self.models[name].spec.clone();
        self.spawn_op(name, node, |control, model, node, tx| async move {
            let result = control.stage(&spec).await;
            tx.send(Command::Staged { model, node, result }).await;
        });
    }

    pub(super) fn start_wake(&mut self, name: &ModelName, node: &NodeId) {
        let from = self.models[name].replicas.get(node).and_then(|r| r.state.tier());
        let Some(from) = from else { return };
        if !self.transition(name, node, ModelState::Waking { from }, Cause::Request) {
            return;
        }
        self.spawn_op(name, node, |control, model, node, tx| async move {
            let result = control.wake(&model).await;
            tx.send(Command::Woke { model, node, result }).await;
        });
    }

    pub(super) fn start_sleep(&mut self, name: &ModelName, node: &NodeId, cause: Cause) {
        let Some(m) = self.models.get(name) else { return };
        let Some(r) = m.replicas.get(node) else { return };
        // Idle and closed to new leases in one step: none can slip in before the sleep.
        if r.state != ModelState::Serving || r.busy || !r.door.close_if_idle() {
            return;
        }
        let warm = m.spec.scaling.warm_tier;
        if !self.transition(name, node, ModelState::Draining, cause.clone()) {
            return;
        }
        if let Some(r) = self.models.get_mut(name).and_then(|m| m.replicas.get_mut(node)) {
            r.sleep_cause = Some(cause);
        }
        self.spawn_op(name, node, move |control, model, node, tx| async move {
            let result = control.sleep(&model, warm).await;
            tx.send(Command::Slept { model, node, result }).await;
        });
    }

    /// Runs a node operation as its own task; it reports back through the channel.
    pub(super) fn spawn_op<F, Fut>(&mut self, name: &ModelName, node: &NodeId, op: F)
    where
        F: FnOnce(Arc<dyn NodeControl>, ModelName, NodeId, Inbox) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(control) = self.nodes.get(node).map(|n| n.handle.control.clone()) else { return };
        if let Some(r) = self.models.get_mut(name).and_then(|m| m.replicas.get_mut(node)) {
            r.busy = true;
        }
        tokio::spawn(op(control, name.clone(), node.clone(), self.tx.clone()));
    }

    pub(super) fn replica_mut(&mut self, name: &ModelName, node: &NodeId) -> Option<&mut Replica> {
        if !self.nodes.contains_key(node) {
            // A result from a node that has left: nothing to update.
            return None;
        }
        self.models.get_mut(name).and_then(|m| m.replicas.get_mut(node))
    }

    pub(super) fn on_staged(&mut self, name: &ModelName, node: &NodeId, result: Result<StageReport, NodeError>) {
        let Some(r) = self.replica_mut(name, node) else { return };
        r.busy = false;
        match result {
            Ok(report) => {
                self.reached(node);
                if let Some(m) = self.models.get_mut(name) {
                    m.footprint = report.device_bytes;
                }
                self.transition(name, node, ModelState::Staged { tier: report.tier }, Cause::Startup);
                self.schedule(name);
            }
            Err(err) => self.op_failed(name, node, err),
        }
        self.release_staged_waiters();
    }

    pub(super) fn on_woke(&mut self, name: &ModelName, node: &NodeId, result: Result<WakeReport, NodeError>) {
        let Some(r) = self.replica_mut(name, node) else { return };
        r.busy = false;
        match result {
            Ok(report) => {
                self.reached(node);
                let Some(r) = self.replica_mut(name, node) else { return };
                r.last_wake = Some(report);
                r.resident_since = Some(Instant::now());
                r.door.forget_uses();
                if let Some(m) = self.models.get_mut(name) {
                    m.footprint = report.device_bytes;
                }
                self.observer.woke(name, &report);
                tracing::info!(model = %name, node = %node, from = %report.from, ms = report.duration.as_millis() as u64, "Model woke");
                self.transition(name, node, ModelState::Serving, Cause::Request);
                self.serve_waiters(name);
            }
            Err(err) => self.op_failed(name, node, err),
        }
        self.schedule_all();
    }

    pub(super) fn on_slept(&mut self, name: &ModelName, node: &NodeId, result: Result<Tier, NodeError>) {
        let Some(r) = self.replica_mut(name, node) else { return };
        r.busy = false;
        r.resident_since = None;
        let cause = r.sleep_cause.take().unwrap_or(Cause::Idle);
        match result {
            Ok(tier) => {
                self.reached(node);
                self.transition(name, node, ModelState::Sleeping { tier }, cause);
            }
            Err(err) => self.op_failed(name, node, err),
        }
        self.schedule_all();
    }

    /// A node operation that failed. A node that cannot be reached (killed,
    /// partitioned, not yet declared lost) is passed over for a while and
    /// the model's requests are placed on another; any other failure is the
    /// model's own and its requests get the reason.
    fn op_failed(&mut self, name: &ModelName, node: &NodeId, err: NodeError) {
        if !matches!(err, NodeError::Unreachable(_)) {
            return self.fail(name, node, err.to_string());
        }
        let reason = err.to_string();
        tracing::warn!(model = %name, node = %node, %reason, "Node unreachable; placing its requests elsewhere");
        if let Some(n) = self.nodes.get_mut(node) {
            n.unreachable_since = Some(Instant::now());
        }
        let public = greenthread_core::redact::public_reason(&reason);
        self.transition(name, node, ModelState::Failed { reason: public }, Cause::Failure);
        if let Some(m) = self.models.get_mut(name) {
            for waiter in m.waiters.iter_mut().filter(|w| !w.avoid.contains(node)) {
                waiter.avoid.push(node.clone());
            }
        }
        self.schedule(name);
    }

    /// An operation reached `node`: it is used again at once.
    fn reached(&mut self, node: &NodeId) {
        if let Some(n) = self.nodes.get_mut(node) {
            n.unreachable_since = None;
        }
    }

    /// Records a failure: logged whole here, kept (and shown to clients)
    /// without paths, credentials or backtraces.
    pub(super) fn fail(&mut self, name: &ModelName, node: &NodeId, reason: String) {
        tracing::error!(model = %name, node = %node, %reason, "Model failed");
        let reason = greenthread_core::redact::public_reason(&reason);
        self.transition(name, node, ModelState::Failed { reason: reason.clone() }, Cause::Failure);
        self.fail_waiters(name, &AcquireError::Failed { model: name.to_string(), reason });
    }

    pub(super) fn fail_waiters(&mut self, name: &ModelName, error: &AcquireError) {
        if let Some(m) = self.models.get_mut(name) {
            for waiter in m.waiters.drain(..) {
                let _ = waiter.reply.send(Err(error.clone()));
            }
        }
    }

    /// Moves the replica of `name` on `node` to `next` if the lifecycle
    /// allows it, recording the event (a missing replica starts absent).
    pub(super) fn transition(&mut self, name: &ModelName, node: &NodeId, next: ModelState, cause: Cause) -> bool {
        let Some(m) = self.models.get_mut(name) else { return false };
        let r = m.replicas.entry(node.clone()).or_insert_with(|| Replica::new(ModelState::Absent));
        match r.state.to(next) {
            Ok(next) => {
                let now = Instant::now();
                let event = TransitionEvent {
                    model: name.clone(),
                    node: node.clone(),
                    from: std::mem::replace(&mut r.state, next.clone()),
                    to: next,
                    after: now.duration_since(r.since),
                    cause,
                };
                r.since = now;
                // Opening is `publish_doors`' to decide; a replica that stops serving closes at once.
                if r.state != ModelState::Serving {
                    r.door.set_open(false);
                }
                tracing::debug!(model = %name, node = %node, from = %event.from, to = %event.to, ms = event.after.as_millis() as u64, cause = event.cause.as_str(), "Model state changed");
                self.observer.transition(&event);
                // Nobody listening is fine.
                let _ = self.events.send(event);
                true
            }
            Err(illegal) => {
                tracing::error!(model = %name, node = %node, error = %illegal, "Refused a lifecycle transition");
                false
            }
        }
    }
}
