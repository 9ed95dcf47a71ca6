//! Projects, services and models: read as one [`StateDoc`], written by
//! carrying out a [`plan`](greenthread_core::desired::plan)'s changes.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use greenthread_core::desired::{
    Change, ChangeAction, ModelDecl, ObjectKind, ProjectDecl, ServiceDecl, StateDoc, model_fields, project_fields,
    service_fields,
};
use greenthread_core::{ModelName, ModelSpec, ProjectName, ServiceName};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::entities::{model, project, service};
use super::{Actor, StoreError, StoreResult, audit};

/// Everything the store holds, with the ids behind the names.
#[derive(Debug, Clone, Default)]
pub struct LoadedState {
    pub doc: StateDoc,
    pub project_ids: BTreeMap<ProjectName, Uuid>,
    pub service_ids: BTreeMap<(ProjectName, ServiceName), Uuid>,
    pub model_ids: BTreeMap<ModelName, Uuid>,
    /// Object-store prefixes each project's models may read from.
    pub artifact_prefixes: BTreeMap<ProjectName, Vec<String>>,
}

impl LoadedState {
    /// Every model's spec outside `scope`: the names a document for `scope` may not take.
    pub fn specs_outside(&self, scope: &BTreeSet<ProjectName>) -> Vec<ModelSpec> {
        self.doc.models.iter().filter(|m| !scope.contains(&m.spec.project)).map(|m| m.spec.clone()).collect()
    }

    pub fn project_name(&self, id: Uuid) -> Option<&ProjectName> {
        self.project_ids.iter().find(|(_, v)| **v == id).map(|(k, _)| k)
    }
}

/// A name read back from the database, of whichever kind the column holds.
fn parse_name<N: std::str::FromStr<Err = greenthread_core::NameError>>(raw: &str) -> StoreResult<N> {
    raw.parse().map_err(|e| StoreError::Corrupt(format!("stored name {raw:?}: {e}")))
}

/// Reads every project, service and model.
///
/// # Errors
/// When the database fails or a stored spec no longer parses.
pub async fn load(conn: &impl ConnectionTrait) -> StoreResult<LoadedState> {
    let mut out = LoadedState::default();
    let mut project_names = BTreeMap::new();
    for p in project::Entity::find().all(conn).await? {
        let name: ProjectName = parse_name(&p.name)?;
        project_names.insert(p.id, name.clone());
        out.project_ids.insert(name.clone(), p.id);
        out.doc.projects.push(ProjectDecl { name, description: p.description });
    }
    let mut service_names = BTreeMap::new();
    for s in service::Entity::find().all(conn).await? {
        let project = project_names
            .get(&s.project_id)
            .cloned()
            .ok_or_else(|| StoreError::Corrupt(format!("service {} belongs to a missing project", s.name)))?;
        let name: ServiceName = parse_name(&s.name)?;
        service_names.insert(s.id, name.clone());
        out.service_ids.insert((project.clone(), name.clone()), s.id);
        out.doc.services.push(ServiceDecl { project, name, description: s.description });
    }
    for m in model::Entity::find().all(conn).await? {
        let mut spec: ModelSpec =
            serde_json::from_str(&m.spec).map_err(|e| StoreError::Corrupt(format!("spec of model {}: {e}", m.name)))?;
        spec.project = project_names
            .get(&m.project_id)
            .cloned()
            .ok_or_else(|| StoreError::Corrupt(format!("model {} belongs to a missing project", m.name)))?;
        let service = service_names
            .get(&m.service_id)
            .cloned()
            .ok_or_else(|| StoreError::Corrupt(format!("model {} belongs to a missing service", m.name)))?;
        out.model_ids.insert(spec.name.clone(), m.id);
        out.doc.models.push(ModelDecl { service, spec });
    }
    for (project, prefixes) in super::prefixes::all(conn).await? {
        if let Some(name) = project_names.get(&project) {
            out.artifact_prefixes.insert(name.clone(), prefixes);
        }
    }
    out.doc = out.doc.sorted();
    Ok(out)
}

/// A digest of the state of `scope`'s projects: it changes whenever anything
/// in them does, and only then.
pub fn etag(doc: &StateDoc, scope: &BTreeSet<ProjectName>) -> String {
    let canonical = serde_json::to_vec(&doc.restricted_to(scope).sorted()).unwrap_or_default();
    hex::encode(&Sha256::digest(&canonical)[..16])
}

pub async fn project_by_name(conn: &impl ConnectionTrait, name: &str) -> StoreResult<Option<project::Model>> {
    Ok(project::Entity::find().filter(project::Column::Name.eq(name)).one(conn).await?)
}

pub async fn service_by_name(
    conn: &impl ConnectionTrait,
    project_id: Uuid,
    name: &str,
) -> StoreResult<Option<service::Model>> {
    Ok(service::Entity::find()
        .filter(service::Column::ProjectId.eq(project_id))
        .filter(service::Column::Name.eq(name))
        .one(conn)
        .await?)
}

fn object_json(fields: BTreeMap<String, Value>) -> Value {
    Value::Object(fields.into_iter().collect())
}

/// Carries out `changes` (a plan from `state` to `desired`) inside `tx`,
/// writing one audit event per change. `state` is updated with the new ids.
///
/// # Errors
/// When the database fails, or a change refers to something missing (the
/// plan was not made from `state`).
pub async fn apply(
    tx: &impl ConnectionTrait,
    state: &mut LoadedState,
    desired: &StateDoc,
    changes: &[Change],
    actor: &Actor,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for change in changes {
        match change.kind {
            ObjectKind::Project => apply_project(tx, state, desired, change, actor, now).await?,
            ObjectKind::Service => apply_service(tx, state, desired, change, actor, now).await?,
            ObjectKind::Model => apply_model(tx, state, desired, change, actor, now).await?,
        }
    }
    Ok(())
}

fn missing(what: &str, name: impl std::fmt::Display) -> StoreError {
    StoreError::NotFound(format!("{what} {name}"))
}

fn action_name(kind: ObjectKind, action: ChangeAction) -> String {
    let kind = match kind {
        ObjectKind::Project => "project",
        ObjectKind::Service => "service",
        ObjectKind::Model => "model",
    };
    let action = match action {
        ChangeAction::Create => "create",
        ChangeAction::Update => "update",
        ChangeAction::Delete => "delete",
    };
    format!("{kind}.{action}")
}

async fn apply_project(
    tx: &impl ConnectionTrait,
    state: &mut LoadedState,
    desired: &StateDoc,
    change: &Change,
    actor: &Actor,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let name: ProjectName = parse_name(&change.name)?;
    let before = state.doc.projects.iter().find(|p| p.name == name).map(|p| object_json(project_fields(p)));
    let after_decl = desired.projects.iter().find(|p| p.name == name);
    let id = match change.action {
        ChangeAction::Create => {
            let decl = after_decl.ok_or_else(|| missing("project", &change.name))?;
            let row = project::ActiveModel {
                id: Set(Uuid::now_v7()),
                name: Set(decl.name.to_string()),
                description: Set(decl.description.clone()),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(tx)
            .await?;
            state.project_ids.insert(decl.name.clone(), row.id);
            row.id
        }
        ChangeAction::Update => {
            let decl = after_decl.ok_or_else(|| missing("project", &change.name))?;
            let id = *state.project_ids.get(&name).ok_or_else(|| missing("project", &change.name))?;
            let mut row = project::Entity::find_by_id(id)
                .one(tx)
                .await?
                .ok_or_else(|| missing("project", &change.name))?
                .into_active_model();
            row.description = Set(decl.description.clone());
            row.updated_at = Set(now);
            row.update(tx).await?;
            id
        }
        ChangeAction::Delete => {
            let id = state.project_ids.remove(&name).ok_or_else(|| missing("project", &change.name))?;
            project::Entity::delete_by_id(id).exec(tx).await?;
            super::prefixes::remove(tx, id).await?;
            id
        }
    };
    let after = after_decl.filter(|_| change.action != ChangeAction::Delete).map(|p| object_json(project_fields(p)));
    audit::record(
        tx,
        audit::NewEvent {
            at: now,
            actor,
            project_id: Some(id),
            action: action_name(change.kind, change.action),
            object_type: "project",
            object_id: Some(id),
            object_name: change.name.to_string(),
            before,
            after,
        },
    )
    .await
}

async fn apply_service(
    tx: &impl ConnectionTrait,
    state: &mut LoadedState,
    desired: &StateDoc,
    change: &Change,
    actor: &Actor,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let key: (ProjectName, ServiceName) = (change.project.clone(), parse_name(&change.name)?);
    let find = |doc: &StateDoc| doc.services.iter().find(|s| s.project == key.0 && s.name == key.1).cloned();
    let before = find(&state.doc).map(|s| object_json(service_fields(&s)));
    let after_decl = find(desired);
    let project_id = *state.project_ids.get(&change.project).ok_or_else(|| missing("project", &change.project))?;
    let id = match change.action {
        ChangeAction::Create => {
            let decl = after_decl.as_ref().ok_or_else(|| missing("service", &change.name))?;
            let row = service::ActiveModel {
                id: Set(Uuid::now_v7()),
                project_id: Set(project_id),
                name: Set(decl.name.to_string()),
                description: Set(decl.description.clone()),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(tx)
            .await?;
            state.service_ids.insert(key.clone(), row.id);
            row.id
        }
        ChangeAction::Update => {
            let decl = after_decl.as_ref().ok_or_else(|| missing("service", &change.name))?;
            let id = *state.service_ids.get(&key).ok_or_else(|| missing("service", &change.name))?;
            let mut row = service::Entity::find_by_id(id)
                .one(tx)
                .await?
                .ok_or_else(|| missing("service", &change.name))?
                .into_active_model();
            row.description = Set(decl.description.clone());
            row.updated_at = Set(now);
            row.update(tx).await?;
            id
        }
        ChangeAction::Delete => {
            let id = state.service_ids.remove(&key).ok_or_else(|| missing("service", &change.name))?;
            service::Entity::delete_by_id(id).exec(tx).await?;
            id
        }
    };
    let after = after_decl.filter(|_| change.action != ChangeAction::Delete).map(|s| object_json(service_fields(&s)));
    audit::record(
        tx,
        audit::NewEvent {
            at: now,
            actor,
            project_id: Some(project_id),
            action: action_name(change.kind, change.action),
            object_type: "service",
            object_id: Some(id),
            object_name: format!("{}/{}", change.project, change.name),
            before,
            after,
        },
    )
    .await
}

async fn apply_model(
    tx: &impl ConnectionTrait,
    state: &mut LoadedState,
    desired: &StateDoc,
    change: &Change,
    actor: &Actor,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let name: ModelName = parse_name(&change.name)?;
    let before = state.doc.models.iter().find(|m| m.spec.name == name).map(|m| object_json(model_fields(m)));
    let after_decl = desired.models.iter().find(|m| m.spec.name == name);
    let ids_of = |decl: &ModelDecl| -> StoreResult<(Uuid, Uuid)> {
        let project =
            *state.project_ids.get(&decl.spec.project).ok_or_else(|| missing("project", &decl.spec.project))?;
        let service = *state
            .service_ids
            .get(&(decl.spec.project.clone(), decl.service.clone()))
            .ok_or_else(|| missing("service", &decl.service))?;
        Ok((project, service))
    };
    let spec_json =
        |decl: &ModelDecl| serde_json::to_string(&decl.spec).map_err(|e| StoreError::Corrupt(e.to_string()));
    let (id, project_id) = match change.action {
        ChangeAction::Create => {
            let decl = after_decl.ok_or_else(|| missing("model", &change.name))?;
            let (project_id, service_id) = ids_of(decl)?;
            let row = model::ActiveModel {
                id: Set(Uuid::now_v7()),
                project_id: Set(project_id),
                service_id: Set(service_id),
                name: Set(decl.spec.name.to_string()),
                spec: Set(spec_json(decl)?),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(tx)
            .await?;
            state.model_ids.insert(decl.spec.name.clone(), row.id);
            (row.id, project_id)
        }
        ChangeAction::Update => {
            let decl = after_decl.ok_or_else(|| missing("model", &change.name))?;
            let (project_id, service_id) = ids_of(decl)?;
            let id = *state.model_ids.get(&name).ok_or_else(|| missing("model", &change.name))?;
            let mut row = model::Entity::find_by_id(id)
                .one(tx)
                .await?
                .ok_or_else(|| missing("model", &change.name))?
                .into_active_model();
            row.project_id = Set(project_id);
            row.service_id = Set(service_id);
            row.spec = Set(spec_json(decl)?);
            row.updated_at = Set(now);
            row.update(tx).await?;
            (id, project_id)
        }
        ChangeAction::Delete => {
            let id = state.model_ids.remove(&name).ok_or_else(|| missing("model", &change.name))?;
            let project_id =
                *state.project_ids.get(&change.project).ok_or_else(|| missing("project", &change.project))?;
            model::Entity::delete_by_id(id).exec(tx).await?;
            (id, project_id)
        }
    };
    let after = after_decl.filter(|_| change.action != ChangeAction::Delete).map(|m| object_json(model_fields(m)));
    audit::record(
        tx,
        audit::NewEvent {
            at: now,
            actor,
            project_id: Some(project_id),
            action: action_name(change.kind, change.action),
            object_type: "model",
            object_id: Some(id),
            object_name: change.name.to_string(),
            before,
            after,
        },
    )
    .await
}
