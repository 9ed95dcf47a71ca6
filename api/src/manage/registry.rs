//! Keeps what the gateway serves in step with the database: after every
//! committed change here, and periodically for changes made by another
//! server of the same database.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use greenthread_core::{ModelName, ModelSpec};
use greenthread_scheduler::{ManagedModel, ModelManager};

use crate::catalog::ModelCatalog;
use greenthread_store::{Store, StoreResult, state};

pub struct Registry {
    store: Store,
    catalog: Arc<ModelCatalog>,
    manager: Option<ModelManager>,
    applied: tokio::sync::Mutex<BTreeMap<ModelName, ModelSpec>>,
    /// Project ids by name, as of the last sync.
    project_ids: std::sync::RwLock<BTreeMap<String, uuid::Uuid>>,
    /// Custom domains by hostname, as of the last sync.
    domains: std::sync::RwLock<BTreeMap<String, DomainRoute>>,
}

/// Where requests to a custom domain go.
#[derive(Debug, Clone)]
pub struct DomainRoute {
    pub verified: bool,
    /// The models of the domain's service: the only ones it shows.
    pub models: Arc<std::collections::HashSet<ModelName>>,
}

impl Registry {
    /// A registry that treats `serving` as what the catalog and manager already hold.
    pub fn new(store: Store, catalog: Arc<ModelCatalog>, manager: Option<ModelManager>, serving: &[ModelSpec]) -> Self {
        let applied = serving.iter().map(|s| (s.name.clone(), s.clone())).collect();
        Self {
            store,
            catalog,
            manager,
            applied: tokio::sync::Mutex::new(applied),
            project_ids: std::sync::RwLock::new(BTreeMap::new()),
            domains: std::sync::RwLock::new(BTreeMap::new()),
        }
    }

    /// Reads the models from the database and hands every difference to the
    /// catalog and the scheduler.
    ///
    /// # Errors
    /// When the database fails; nothing changes then.
    pub async fn sync(&self) -> StoreResult<()> {
        let mut applied = self.applied.lock().await;
        let current = state::load(self.store.db()).await?;
        self.load_domains().await?;
        *self.project_ids.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            current.project_ids.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let wanted: BTreeMap<ModelName, ModelSpec> =
            current.doc.models.into_iter().map(|m| (m.spec.name.clone(), m.spec)).collect();
        let now = greenthread_protocol::ids::now_unix();
        for (name, spec) in &wanted {
            if applied.get(name) != Some(spec) {
                tracing::info!(model = %name, "Model spec changed in the database");
                self.catalog.put(spec.clone(), now);
                if let Some(m) = &self.manager {
                    m.upsert(ManagedModel { spec: spec.clone(), device_bytes: 0 });
                }
            }
        }
        for name in applied.keys() {
            if !wanted.contains_key(name) {
                tracing::info!(model = %name, "Model removed from the database");
                self.catalog.remove(name);
                if let Some(m) = &self.manager {
                    m.remove(name);
                }
            }
        }
        *applied = wanted;
        Ok(())
    }

    async fn load_domains(&self) -> StoreResult<()> {
        use sea_orm::EntityTrait;
        let db = self.store.db();
        let rows = greenthread_store::entities::domain::Entity::find().all(db).await?;
        let models = greenthread_store::entities::model::Entity::find().all(db).await?;
        let routes = rows
            .into_iter()
            .map(|d| {
                let names = models
                    .iter()
                    .filter(|m| m.service_id == d.service_id)
                    .filter_map(|m| {
                        let parsed = ModelName::parse(&m.name);
                        parsed.inspect_err(|e| tracing::warn!(model = %m.name, error = %e, "A stored model name does not parse; its domain skips it")).ok()
                    })
                    .collect();
                (d.hostname, DomainRoute { verified: d.verified_at.is_some(), models: Arc::new(names) })
            })
            .collect();
        *self.domains.write().unwrap_or_else(std::sync::PoisonError::into_inner) = routes;
        Ok(())
    }

    /// The route of a custom domain, if `host` is one.
    pub fn domain(&self, host: &str) -> Option<DomainRoute> {
        self.domains.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(host).cloned()
    }

    /// The id of project `name`, as of the last sync.
    pub fn project_id(&self, name: &str) -> Option<uuid::Uuid> {
        self.project_ids.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(name).copied()
    }

    /// Syncs every `every`, for changes that other servers made.
    pub fn spawn_periodic(self: &Arc<Self>, every: Duration) {
        let registry = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(r) = registry.upgrade() else { return };
                if let Err(e) = r.sync().await {
                    tracing::warn!(error = %e, "Cannot read model specs from the database");
                }
            }
        });
    }
}
