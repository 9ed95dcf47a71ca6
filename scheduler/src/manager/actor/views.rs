//! What the manager reads of its own state: a node's device as the
//! placement and preemption policies see it, and the status it reports.

use std::time::Duration;

use greenthread_core::{ModelName, ModelState, NodeId, Tier, WakeProgress};
use tokio::time::Instant;

use super::Actor;
use crate::manager::{ManagerStatus, ModelStatus, NodeStatus, ReplicaStatus};
use crate::placement::{NodeView, Placement, place};
use crate::preemption::{DeviceView, Resident, WakeRequest};

impl Actor {
    /// Where `name` (needing `bytes`, its oldest request having waited
    /// `waited`) should wake, not on `avoid`.
    pub(super) fn placement(&self, name: &ModelName, bytes: u64, avoid: &[NodeId], waited: Duration) -> Placement {
        let now = Instant::now();
        let m = &self.models[name];
        let views: Vec<NodeView> = self
            .nodes
            .iter()
            .map(|(id, node)| {
                let replica = m.replicas.get(id);
                let weights = match replica.map(|r| &r.state) {
                    Some(ModelState::Staged { tier } | ModelState::Sleeping { tier }) if *tier != Tier::Object => {
                        Some(*tier)
                    }
                    _ => node.weights.get(name).copied(),
                };
                NodeView {
                    node: id.clone(),
                    alive: node.reachable(now),
                    device: self.device_view(id, now),
                    weights,
                    has_replica: avoid.contains(id) || replica.is_some_and(|r| r.state.on_device() || r.busy),
                }
            })
            .collect();
        let request = WakeRequest { model: name.clone(), project: m.spec.project.clone(), bytes, waited };
        place(&views, &request, &self.config.rules)
    }

    /// The models holding device memory on `node`, as the policy sees them.
    /// Replicas already draining are left out: their room is coming.
    pub(super) fn device_view(&self, node: &NodeId, now: Instant) -> DeviceView {
        let budget = self.nodes.get(node).map_or(0, |n| n.handle.device_budget);
        let resident = self
            .models
            .iter()
            .filter_map(|(name, m)| m.replicas.get(node).map(|r| (name, m, r)))
            .filter(|(_, _, r)| r.state.on_device() && r.state != ModelState::Draining)
            .map(|(name, m, r)| Resident {
                model: name.clone(),
                project: m.spec.project.clone(),
                bytes: m.footprint,
                in_flight: r.in_flight(),
                idle_for: r.door.last_used().map_or(Duration::MAX, |t| now.duration_since(t)),
                resident_for: r.resident_since.map_or(Duration::ZERO, |t| now.duration_since(t)),
                uses: r.door.uses(),
                never_preempt: m.spec.scaling.never_preempt || m.on_device() as u32 <= m.spec.scaling.min_replicas,
                settled: r.state == ModelState::Serving && !r.busy,
            })
            .collect();
        DeviceView { budget, resident }
    }

    /// Device bytes on `node` counting replicas still draining.
    pub(super) fn device_used(&self, node: &NodeId) -> u64 {
        self.models
            .values()
            .filter_map(|m| m.replicas.get(node).filter(|r| r.state.on_device()).map(|_| m.footprint))
            .sum()
    }

    pub(super) fn status(&self) -> ManagerStatus {
        let now = Instant::now();
        let rank = |s: &ModelState| match s {
            ModelState::Serving => 0,
            ModelState::Waking { .. } => 1,
            ModelState::Draining => 2,
            ModelState::Fetching => 3,
            ModelState::Staged { .. } => 4,
            ModelState::Sleeping { .. } => 5,
            ModelState::Failed { .. } => 6,
            ModelState::Absent => 7,
        };
        let models = self
            .models
            .iter()
            .map(|(name, m)| {
                let replica_list: Vec<ReplicaStatus> = m
                    .replicas
                    .iter()
                    .map(|(node, r)| ReplicaStatus {
                        node: node.clone(),
                        state: r.state.clone(),
                        device_bytes: if r.state.on_device() { m.footprint } else { 0 },
                        in_flight: r.in_flight(),
                        last_wake: r.last_wake,
                        wake_progress: WakeProgress::of(&r.state, now.duration_since(r.since), r.last_wake.as_ref()),
                    })
                    .collect();
                let state = m
                    .replicas
                    .values()
                    .map(|r| &r.state)
                    .min_by_key(|s| rank(s))
                    .cloned()
                    .unwrap_or(ModelState::Absent);
                ModelStatus {
                    name: name.clone(),
                    project: m.spec.project.clone(),
                    state,
                    replicas: m.on_device() as u32,
                    device_bytes: replica_list.iter().map(|r| r.device_bytes).sum(),
                    footprint_bytes: m.footprint,
                    in_flight: replica_list.iter().map(|r| r.in_flight).sum(),
                    idle_for: m.last_used().map(|t| now.duration_since(t)),
                    last_wake: m.replicas.values().filter_map(|r| r.last_wake).next_back(),
                    waiting: m.waiters.len(),
                    wake_progress: replica_list.iter().filter_map(|r| r.wake_progress).max_by_key(|p| p.elapsed),
                    replica_list,
                }
            })
            .collect::<Vec<_>>();
        let nodes: Vec<NodeStatus> = self
            .nodes
            .iter()
            .map(|(id, n)| NodeStatus {
                id: id.clone(),
                device_budget: n.handle.device_budget,
                device_used: self.device_used(id),
                tiers: n.handle.control.tiers(),
            })
            .collect();
        ManagerStatus {
            device_budget: nodes.iter().map(|n| n.device_budget).sum(),
            device_used: nodes.iter().map(|n| n.device_used).sum(),
            nodes,
            models,
        }
    }
}
