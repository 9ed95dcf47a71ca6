//! Adding, changing and removing models while they serve.

use std::collections::BTreeMap;

use greenthread_core::{ModelName, ModelSpec, ModelState, NodeId};

use super::{Actor, Model, Pending};
use crate::manager::{AcquireError, Cause, ManagedModel};

impl Actor {
    /// Adds a model, or changes one. A change the engine must load afresh
    /// drains the model's replicas first (requests meanwhile wait for the
    /// new spec); any other change (scaling, aliases) applies at once.
    pub(super) fn upsert(&mut self, managed: ManagedModel) {
        let name = managed.spec.name.clone();
        let Some(m) = self.models.get_mut(&name) else {
            let model = Model {
                spec: managed.spec,
                footprint: managed.device_bytes,
                waiters: Vec::new(),
                replicas: BTreeMap::new(),
                pending: None,
            };
            self.models.insert(name.clone(), model);
            tracing::info!(model = %name, "Model added");
            self.stage_initial(&name);
            return;
        };
        let (old, new) = (&m.spec, &managed.spec);
        let reloads = (&old.artifact, &old.sha256, old.context_length, &old.chat_template)
            != (&new.artifact, &new.sha256, new.context_length, &new.chat_template);
        if reloads || matches!(m.pending, Some(Pending::Respec(_))) {
            tracing::info!(model = %name, "Model changed; its replicas restart with the new spec");
            m.pending = Some(Pending::Respec(managed.spec));
            self.retire(&name);
        } else {
            m.spec = managed.spec;
            m.pending = None;
            self.schedule(&name);
        }
    }

    /// Takes a model out: waiting requests are told it is gone, and it
    /// leaves once its requests in flight are done and its replicas slept.
    pub(super) fn remove_model(&mut self, name: &ModelName) {
        let Some(m) = self.models.get_mut(name) else { return };
        m.pending = Some(Pending::Remove);
        self.fail_waiters(name, &AcquireError::UnknownModel(name.to_string()));
        self.retire(name);
    }

    /// Tells every node, each on its own, to drop what it holds of a
    /// removed model (its RAM copy and cached file), so that a deleted
    /// model frees its tiers. The removed spec goes along: a node that has
    /// since been given the name's new spec keeps that.
    fn forget_everywhere(&self, spec: ModelSpec) {
        let spec = std::sync::Arc::new(spec);
        for (node, n) in &self.nodes {
            let (node, control, spec) = (node.clone(), n.handle.control.clone(), spec.clone());
            tokio::spawn(async move {
                if let Err(e) = control.forget(&spec).await {
                    tracing::warn!(model = %spec.name, %node, error = %e, "Cannot drop a removed model's files");
                }
            });
        }
    }

    pub(super) fn retire_all(&mut self) {
        let pending: Vec<ModelName> =
            self.models.iter().filter(|(_, m)| m.pending.is_some()).map(|(n, _)| n.clone()).collect();
        for name in pending {
            self.retire(&name);
        }
    }

    /// One step of a pending change: idle replicas go to sleep; once none
    /// holds the device, the change is made.
    pub(super) fn retire(&mut self, name: &ModelName) {
        let Some(m) = self.models.get(name) else { return };
        let idle: Vec<NodeId> = m
            .replicas
            .iter()
            .filter(|(_, r)| r.state == ModelState::Serving && !r.busy && r.in_flight() == 0)
            .map(|(n, _)| n.clone())
            .collect();
        for node in idle {
            self.start_sleep(name, &node, Cause::Updated);
        }
        let Some(m) = self.models.get_mut(name) else { return };
        let settled = m.replicas.values().all(|r| !r.busy && !r.state.on_device() && r.state != ModelState::Fetching);
        if !settled {
            return;
        }
        for node in self.nodes.values_mut() {
            node.weights.remove(name);
        }
        match m.pending.take() {
            Some(Pending::Remove) => {
                if let Some(removed) = self.models.remove(name) {
                    self.forget_everywhere(removed.spec);
                }
                tracing::info!(model = %name, "Model removed");
            }
            Some(Pending::Respec(spec)) => {
                m.spec = spec;
                m.replicas.clear();
                if m.waiters.is_empty() {
                    self.stage_initial(name);
                } else {
                    self.schedule(name);
                }
            }
            None => {}
        }
    }
}
