//! Projects, services and models as one document: what a GitOps folder
//! declares and what the database holds, in the same shape. [`plan`] is the
//! pure difference between two such documents.
//!
//! A document covers the projects it lists: a plan creates, updates and
//! deletes services and models inside those projects and never touches a
//! project the document does not name. Deleting a whole project is an
//! explicit mutation, not the side effect of a missing file.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ModelAlias, ModelSpec, ModelSpecError, ProjectName, ServiceName, validate_model_set};

/// The service a model belongs to when its declaration names none.
pub const DEFAULT_SERVICE: &str = "default";

/// The service of models whose declaration names none.
pub fn default_service() -> ServiceName {
    ServiceName::parse(DEFAULT_SERVICE).unwrap_or_else(|_| unreachable!("the default service name is a valid slug"))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectDecl {
    pub name: ProjectName,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDecl {
    pub project: ProjectName,
    pub name: ServiceName,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDecl {
    /// The service inside `spec.project`.
    pub service: ServiceName,
    pub spec: ModelSpec,
}

/// A set of projects with their services and models.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateDoc {
    pub projects: Vec<ProjectDecl>,
    pub services: Vec<ServiceDecl>,
    pub models: Vec<ModelDecl>,
}

impl StateDoc {
    /// The same content in a fixed order, so equal states serialize equally.
    pub fn sorted(mut self) -> Self {
        self.projects.sort_by(|a, b| a.name.cmp(&b.name));
        self.services.sort_by(|a, b| (&a.project, &a.name).cmp(&(&b.project, &b.name)));
        self.models.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        for m in &mut self.models {
            m.spec.aliases.sort();
            m.spec.aliases.dedup();
        }
        self
    }

    /// Only the parts that belong to `projects`.
    pub fn restricted_to(&self, projects: &BTreeSet<ProjectName>) -> Self {
        Self {
            projects: self.projects.iter().filter(|p| projects.contains(&p.name)).cloned().collect(),
            services: self.services.iter().filter(|s| projects.contains(&s.project)).cloned().collect(),
            models: self.models.iter().filter(|m| projects.contains(&m.spec.project)).cloned().collect(),
        }
    }

    pub fn project_names(&self) -> BTreeSet<ProjectName> {
        self.projects.iter().map(|p| p.name.clone()).collect()
    }
}

/// Why a desired document cannot be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DesiredError {
    #[error("{what} {name:?} is declared twice")]
    Duplicate { what: &'static str, name: String },
    #[error("service {service:?} names project {project:?}, which the document does not declare")]
    UnknownProject { service: String, project: String },
    #[error("model {model:?} names service {service:?} of project {project:?}, which the document does not declare")]
    UnknownService { model: String, project: String, service: String },
    #[error("the name {0:?} is already taken")]
    Taken(String),
    #[error(transparent)]
    Spec(#[from] ModelSpecError),
}

impl DesiredError {
    /// The document field the error is about, for a client to point at.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Duplicate { what: "project", .. } | Self::UnknownProject { .. } => "projects",
            Self::Duplicate { what: "service", .. } | Self::UnknownService { .. } => "services",
            _ => "models",
        }
    }
}

/// Checks a desired document on its own and against the models of every
/// project it does not cover (`others`): model names and aliases are global,
/// as they are the slugs of the models' URLs. A clash with another
/// project's model says only that the name is taken, not whose it is.
///
/// # Errors
/// The first [`DesiredError`] found.
pub fn validate(desired: &StateDoc, others: &[ModelSpec]) -> Result<(), DesiredError> {
    let mut projects = BTreeSet::new();
    for p in &desired.projects {
        if !projects.insert(&p.name) {
            return Err(DesiredError::Duplicate { what: "project", name: p.name.to_string() });
        }
    }
    let mut services = BTreeSet::new();
    for s in &desired.services {
        if !projects.contains(&s.project) {
            return Err(DesiredError::UnknownProject { service: s.name.to_string(), project: s.project.to_string() });
        }
        if !services.insert((&s.project, &s.name)) {
            return Err(DesiredError::Duplicate { what: "service", name: format!("{}/{}", s.project, s.name) });
        }
    }
    for m in &desired.models {
        if !services.contains(&(&m.spec.project, &m.service)) {
            return Err(DesiredError::UnknownService {
                model: m.spec.name.to_string(),
                project: m.spec.project.to_string(),
                service: m.service.to_string(),
            });
        }
    }
    let ours: Vec<ModelSpec> = desired.models.iter().map(|m| m.spec.clone()).collect();
    validate_model_set(&ours).map_err(|e| match e {
        ModelSpecError::DuplicateId { first, second, .. } if first == second => {
            DesiredError::Duplicate { what: "model", name: first }
        }
        ModelSpecError::DuplicateId { id, .. } => DesiredError::Taken(id),
        other => DesiredError::Spec(other),
    })?;
    let taken: BTreeSet<&str> = others
        .iter()
        .flat_map(|s| std::iter::once(s.name.as_str()).chain(s.aliases.iter().map(ModelAlias::as_str)))
        .collect();
    for spec in &ours {
        let ids = std::iter::once(spec.name.as_str()).chain(spec.aliases.iter().map(ModelAlias::as_str));
        if let Some(id) = ids.into_iter().find(|id| taken.contains(id)) {
            return Err(DesiredError::Taken(id.to_owned()));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Project,
    Service,
    Model,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeAction {
    Create,
    Update,
    Delete,
}

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// One object to create, update or delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub action: ChangeAction,
    pub kind: ObjectKind,
    pub project: ProjectName,
    /// The object's own name (the project's, the service's or the model's).
    pub name: String,
    pub fields: Vec<FieldChange>,
    /// Deletes something, or restarts a running model.
    pub destructive: bool,
}

impl Change {
    /// `project/acme`, `service/acme/web`, `model/llama`.
    pub fn address(&self) -> String {
        match self.kind {
            ObjectKind::Project => format!("project/{}", self.name),
            ObjectKind::Service => format!("service/{}/{}", self.project, self.name),
            ObjectKind::Model => format!("model/{}", self.name),
        }
    }
}

/// Model fields whose change reloads the model: its replicas restart.
pub const RESTARTING_FIELDS: [&str; 6] = ["artifact", "sha256", "context_length", "chat_template", "engine", "kind"];

/// The flat, comparable form of an object: field name to value.
pub fn project_fields(p: &ProjectDecl) -> BTreeMap<String, Value> {
    BTreeMap::from([("description".to_owned(), Value::String(p.description.clone()))])
}

pub fn service_fields(s: &ServiceDecl) -> BTreeMap<String, Value> {
    BTreeMap::from([("description".to_owned(), Value::String(s.description.clone()))])
}

pub fn model_fields(m: &ModelDecl) -> BTreeMap<String, Value> {
    let s = &m.spec;
    let mut aliases: Vec<&str> = s.aliases.iter().map(ModelAlias::as_str).collect();
    aliases.sort_unstable();
    BTreeMap::from([
        ("project".to_owned(), Value::from(s.project.as_str())),
        ("service".to_owned(), Value::from(m.service.as_str())),
        ("artifact".to_owned(), Value::from(s.artifact.to_string())),
        ("sha256".to_owned(), s.sha256.as_ref().map_or(Value::Null, |d| Value::from(d.as_str()))),
        ("aliases".to_owned(), Value::from(aliases)),
        ("context_length".to_owned(), s.context_length.map_or(Value::Null, Value::from)),
        ("chat_template".to_owned(), s.chat_template.clone().map_or(Value::Null, Value::from)),
        ("min_replicas".to_owned(), Value::from(s.scaling.min_replicas)),
        ("max_replicas".to_owned(), Value::from(s.scaling.max_replicas)),
        ("idle_timeout".to_owned(), Value::from(crate::format_duration(s.scaling.idle_timeout))),
        ("warm_tier".to_owned(), serde_json::to_value(s.scaling.warm_tier).unwrap_or(Value::Null)),
        ("never_preempt".to_owned(), Value::from(s.scaling.never_preempt)),
        ("max_concurrency".to_owned(), s.scaling.max_concurrency.map_or(Value::Null, Value::from)),
        ("max_queue".to_owned(), s.scaling.max_queue.map_or(Value::Null, Value::from)),
        ("engine".to_owned(), serde_json::to_value(&s.engine).unwrap_or(Value::Null)),
        ("kind".to_owned(), s.kind.map_or(Value::Null, |k| Value::from(k.as_str()))),
    ])
}

fn field_changes(before: &BTreeMap<String, Value>, after: &BTreeMap<String, Value>) -> Vec<FieldChange> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| FieldChange { field: k.clone(), before: before.get(k).cloned(), after: after.get(k).cloned() })
        .collect()
}

/// The changes that take `current` to `desired`, within the projects
/// `desired` lists: creates (projects, then services, then models), then
/// updates, then deletes (models before the services that held them).
/// Parts of `current` outside those projects are ignored.
pub fn plan(current: &StateDoc, desired: &StateDoc) -> Vec<Change> {
    let scope = desired.project_names();
    let current = current.restricted_to(&scope);
    let mut changes = Vec::new();
    let mut diff = |kind, project: &ProjectName, name: &str, before: Option<BTreeMap<String, Value>>, after| {
        let (action, fields) = match (&before, &after) {
            (None, Some(a)) => (ChangeAction::Create, field_changes(&BTreeMap::new(), a)),
            (Some(b), None) => (ChangeAction::Delete, field_changes(b, &BTreeMap::new())),
            (Some(b), Some(a)) => (ChangeAction::Update, field_changes(b, a)),
            (None, None) => return,
        };
        if fields.is_empty() && action == ChangeAction::Update {
            return;
        }
        let destructive = action == ChangeAction::Delete
            || (kind == ObjectKind::Model
                && action == ChangeAction::Update
                && fields.iter().any(|f| RESTARTING_FIELDS.contains(&f.field.as_str())));
        changes.push(Change { action, kind, project: project.clone(), name: name.to_owned(), fields, destructive });
    };
    let projects_before: BTreeMap<_, _> = current.projects.iter().map(|p| (&p.name, p)).collect();
    for p in &desired.projects {
        diff(
            ObjectKind::Project,
            &p.name,
            p.name.as_str(),
            projects_before.get(&p.name).map(|b| project_fields(b)),
            Some(project_fields(p)),
        );
    }
    let services_before: BTreeMap<_, _> = current.services.iter().map(|s| ((&s.project, &s.name), s)).collect();
    let services_after: BTreeMap<_, _> = desired.services.iter().map(|s| ((&s.project, &s.name), s)).collect();
    for (key, s) in &services_after {
        diff(
            ObjectKind::Service,
            &s.project,
            s.name.as_str(),
            services_before.get(key).map(|b| service_fields(b)),
            Some(service_fields(s)),
        );
    }
    let models_before: BTreeMap<_, _> = current.models.iter().map(|m| (&m.spec.name, m)).collect();
    let models_after: BTreeMap<_, _> = desired.models.iter().map(|m| (&m.spec.name, m)).collect();
    for (name, m) in &models_after {
        diff(
            ObjectKind::Model,
            &m.spec.project,
            name.as_str(),
            models_before.get(name).map(|b| model_fields(b)),
            Some(model_fields(m)),
        );
    }
    for (name, m) in &models_before {
        if !models_after.contains_key(name) {
            diff(ObjectKind::Model, &m.spec.project, name.as_str(), Some(model_fields(m)), None);
        }
    }
    for (key, s) in &services_before {
        if !services_after.contains_key(key) {
            diff(ObjectKind::Service, &s.project, s.name.as_str(), Some(service_fields(s)), None);
        }
    }
    // Creates first, then updates, then deletes; each group parents before children
    // (deletes children first), which the insertion order above already gives.
    changes.sort_by_key(|c| c.action);
    changes
}

#[cfg(test)]
mod tests;
