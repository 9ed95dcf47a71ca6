//! The operator's view of the database and the scheduler: a `Model`
//! resource's declaration is written as any change is (validated, in one
//! transaction, audited with the resource as the actor), and its status
//! comes from the model manager.

use std::sync::Arc;

use greenthread_core::ProjectName;
use greenthread_core::desired::{ModelDecl, ProjectDecl, ServiceDecl};
use greenthread_kube::reconcile::{ModelStore, RuntimeView, StoreError, StoreFuture};
use greenthread_scheduler::ModelManager;

use crate::manage::{Author, Management, OpError};
use greenthread_store::{Actor, state};

/// The database behind the operator.
pub struct DatabaseModels {
    mgmt: Arc<Management>,
    manager: Option<ModelManager>,
}

impl DatabaseModels {
    pub fn new(mgmt: Arc<Management>, manager: Option<ModelManager>) -> Self {
        Self { mgmt, manager }
    }
}

fn store_error(e: OpError) -> StoreError {
    match e {
        OpError::Store(e) => StoreError::Unavailable(e.to_string()),
        OpError::User(errors) => StoreError::Refused(
            errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "),
        ),
        other => StoreError::Refused(other.to_string()),
    }
}

impl ModelStore for DatabaseModels {
    fn get<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<ModelDecl>> {
        Box::pin(async move {
            let loaded = state::load(self.mgmt.store.db()).await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
            Ok(loaded.doc.models.into_iter().find(|m| m.spec.name.as_str() == name))
        })
    }

    /// Writes `decl`, creating its project and service when they are new
    /// (a namespace's first Model brings its project along).
    fn put(&self, decl: ModelDecl) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let project = decl.spec.project.clone();
            let actor = Actor::kubernetes(&format!("{project}/{}", decl.spec.name));
            self.mgmt
                .edit(Author::Operator, &actor, &project, |_, desired| {
                    if !desired.projects.iter().any(|p| p.name == project) {
                        desired.projects.push(ProjectDecl { name: project.clone(), description: String::new() });
                    }
                    if !desired.services.iter().any(|s| s.name == decl.service) {
                        desired.services.push(ServiceDecl {
                            project: project.clone(),
                            name: decl.service.clone(),
                            description: String::new(),
                        });
                    }
                    desired.models.retain(|m| m.spec.name != decl.spec.name);
                    desired.models.push(decl);
                    Ok(())
                })
                .await
                .map(drop)
                .map_err(store_error)
        })
    }

    fn remove<'a>(&'a self, name: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let Some(current) = self.get(name).await? else { return Ok(()) };
            let project: ProjectName = current.spec.project.clone();
            let actor = Actor::kubernetes(&format!("{project}/{name}"));
            self.mgmt
                .edit(Author::Operator, &actor, &project, |_, desired| {
                    desired.models.retain(|m| m.spec.name.as_str() != name);
                    Ok(())
                })
                .await
                .map(drop)
                .map_err(store_error)
        })
    }

    fn runtime<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<RuntimeView>> {
        Box::pin(async move {
            let Some(manager) = &self.manager else { return Ok(None) };
            let status = manager.status().await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
            Ok(status.models.into_iter().find(|m| m.name.as_str() == name).map(|m| RuntimeView {
                tier: m.state.weights_tier().map(|t| t.as_str().to_owned()),
                state: m.state.name().to_owned(),
                replicas: m.replicas,
                device_bytes: m.device_bytes,
                last_wake_ms: m.last_wake.map(|w| w.duration.as_secs_f64() * 1000.0),
            }))
        })
    }
}
