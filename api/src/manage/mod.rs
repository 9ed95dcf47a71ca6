//! The management plane's operations: every change to projects, services
//! and models — a single GraphQL mutation, a GitOps apply or the server's
//! own `--config` — goes through [`Management::apply`] or
//! [`Management::edit`]: permission, validation, the plan, its changes and
//! their audit events in one transaction, then the registry brings the
//! serving side in step.

pub mod artifacts;
pub mod registry;

use std::collections::BTreeSet;
use std::sync::Arc;

use greenthread_core::desired::{self, Change, ChangeAction, DesiredError, ObjectKind, StateDoc};
use greenthread_core::{ModelSpecError, ProjectName};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use self::artifacts::ArtifactPolicy;
pub use self::registry::Registry;
use greenthread_store::auth::{KeyService, Principal};
use greenthread_store::entities::idempotency_key;
use greenthread_store::state::{self, LoadedState};
use greenthread_store::{Actor, DEFAULT_PROJECT, Store, StoreError, keys};

/// A problem with the caller's input, pointing at the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, async_graphql::SimpleObject)]
pub struct UserError {
    /// Where in the input: `input.name`, `desired.models`, …
    pub field: String,
    pub message: String,
    /// `INVALID`, `TAKEN`, `NOT_FOUND`, `FORBIDDEN_ARTIFACT`, `PROTECTED`.
    pub code: String,
}

impl UserError {
    pub fn new(field: impl Into<String>, code: &str, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into(), code: code.to_owned() }
    }
}

/// Why an operation did nothing.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("invalid input: {}", .0.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; "))]
    User(Vec<UserError>),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for OpError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Store(StoreError::Db(e))
    }
}

pub type OpResult<T> = Result<T, OpError>;

/// Who a change comes from: a key, or the Kubernetes operator writing a
/// `Model` resource. (The server's own `--config` goes through
/// [`apply_config`], which trusts it.)
#[derive(Clone, Copy)]
pub enum Author<'a> {
    Key(&'a Principal),
    /// May write any project (namespaces map to projects), but what it
    /// writes came from whoever may create resources: artifacts are checked
    /// against the server's artifact policy as a key's are.
    Operator,
}

impl Author<'_> {
    fn can_manage(&self, project: uuid::Uuid) -> bool {
        match self {
            Self::Key(p) => p.can_manage(project),
            Self::Operator => true,
        }
    }

    fn is_admin(&self) -> bool {
        match self {
            Self::Key(p) => p.is_admin(),
            Self::Operator => true,
        }
    }

    /// Whether it may name any object-store artifact, outside the project's
    /// allowed prefixes: an admin key.
    fn reads_any_object(&self) -> bool {
        match self {
            Self::Key(p) => p.is_admin(),
            Self::Operator => false,
        }
    }
}

/// What a plan or an apply reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub changes: Vec<Change>,
    /// The state's etag: before the changes for a plan, after them for an apply.
    pub etag: String,
}

/// Everything the management operations need.
pub struct Management {
    pub store: Store,
    pub keys: Arc<KeyService>,
    pub registry: Arc<Registry>,
    pub artifacts: ArtifactPolicy,
    /// Looks up custom domains' verification records.
    pub resolver: Arc<dyn crate::domains::TxtResolver>,
}

fn desired_errors(e: &DesiredError, prefix: &str) -> Vec<UserError> {
    if let DesiredError::Spec(ModelSpecError::Engine { model, errors }) = e {
        // One error per engine field, each pointing at its field.
        return errors
            .iter()
            .map(|err| UserError::new(format!("{prefix}.models.{model}.{}", err.field), "INVALID", err.message.clone()))
            .collect();
    }
    let code = match e {
        DesiredError::Taken(_) => "TAKEN",
        DesiredError::Duplicate { .. } => "DUPLICATE",
        _ => "INVALID",
    };
    vec![UserError::new(format!("{prefix}.{}", e.field()), code, e.to_string())]
}

impl Management {
    /// Checks that `author` may change every project in `scope`: its own
    /// (manage scope) or any (admin); only admins create projects.
    fn check_scope(state: &LoadedState, author: Author<'_>, scope: &BTreeSet<ProjectName>) -> OpResult<()> {
        for project in scope {
            match state.project_ids.get(project) {
                Some(id) if author.can_manage(*id) => {}
                Some(_) => return Err(OpError::Forbidden(format!("this key may not manage project {project}"))),
                None if author.is_admin() => {}
                None => return Err(OpError::Forbidden(format!("only an admin key may create project {project}"))),
            }
        }
        Ok(())
    }

    /// Validates `desired` against `state` and returns the plan.
    fn prepare(
        &self,
        state: &LoadedState,
        author: Author<'_>,
        desired: &StateDoc,
        field: &str,
    ) -> OpResult<Vec<Change>> {
        let scope = desired.project_names();
        Self::check_scope(state, author, &scope)?;
        desired::validate(desired, &state.specs_outside(&scope))
            .map_err(|e| OpError::User(desired_errors(&e, field)))?;
        let changes = desired::plan(&state.doc, desired);
        let mut errors = Vec::new();
        for change in changes.iter().filter(|c| c.kind == ObjectKind::Model && c.action != ChangeAction::Delete) {
            let Some(m) = desired.models.iter().find(|m| m.spec.name.as_str() == change.name) else { continue };
            let prefixes = state.artifact_prefixes.get(&m.spec.project).map_or(&[][..], Vec::as_slice);
            let allowed = self.artifacts.check(&m.spec.artifact).and_then(|()| {
                if author.reads_any_object() { Ok(()) } else { artifacts::object_allowed(&m.spec.artifact, prefixes) }
            });
            // An engine is a program the nodes run: only the server's own
            // configuration and admin keys (and the operator, under the
            // cluster's RBAC) may choose one.
            if m.spec.engine.is_external() && change.fields.iter().any(|f| f.field == "engine") && !author.is_admin() {
                errors.push(UserError::new(
                    format!("{field}.models.{}.engine", m.spec.name),
                    "FORBIDDEN",
                    "only an admin key may choose a model's engine: it runs a program on the nodes",
                ));
            }
            if change.fields.iter().any(|f| f.field == "artifact")
                && let Err(message) = allowed
            {
                errors.push(UserError::new(
                    format!("{field}.models.{}.artifact", m.spec.name),
                    "FORBIDDEN_ARTIFACT",
                    message,
                ));
            }
        }
        if !errors.is_empty() {
            return Err(OpError::User(errors));
        }
        Ok(changes)
    }

    /// The changes `desired` would make, and the current etag. Writes nothing.
    ///
    /// # Errors
    /// [`OpError`]: forbidden projects, invalid input, a failing database.
    pub async fn plan(&self, author: Author<'_>, desired: &StateDoc) -> OpResult<Outcome> {
        let state = state::load(self.store.db()).await?;
        let changes = self.prepare(&state, author, desired, "desired")?;
        Ok(Outcome { changes, etag: state::etag(&state.doc, &desired.project_names()) })
    }

    /// Carries out the plan for `desired` in one transaction, if the state
    /// of its projects still has `base_etag` (else [`OpError::Conflict`]).
    /// With an idempotency key, a repeat of the same request returns the
    /// first result and a different request under the same key is a conflict.
    ///
    /// # Errors
    /// [`OpError`]: forbidden projects, invalid input, a moved state, a reused key.
    pub async fn apply(
        &self,
        author: Author<'_>,
        actor: &Actor,
        desired: &StateDoc,
        base_etag: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> OpResult<Outcome> {
        let tx = self.store.begin_write().await?;
        let request_hash = {
            let canonical = serde_json::to_vec(&(desired.clone().sorted(), base_etag)).unwrap_or_default();
            hex::encode(Sha256::digest(&canonical))
        };
        let idempotency = match (idempotency_key, actor.key_id) {
            (Some(key), Some(actor_key)) => Some((actor_key, key.to_owned())),
            _ => None,
        };
        if let Some((actor_key, key)) = &idempotency
            && let Some(done) = idempotency_key::Entity::find_by_id((*actor_key, key.clone())).one(&tx).await?
        {
            if done.request_hash != request_hash {
                return Err(OpError::Conflict(format!(
                    "idempotency key {key:?} was already used for a different request"
                )));
            }
            return serde_json::from_str(&done.response)
                .map_err(|e| OpError::Store(StoreError::Corrupt(e.to_string())));
        }
        let mut state = state::load(&tx).await?;
        let scope = desired.project_names();
        if let Some(base) = base_etag {
            let now = state::etag(&state.doc, &scope);
            if now != base {
                return Err(OpError::Conflict(format!(
                    "the state changed since the plan (etag {base} is now {now}); plan again"
                )));
            }
        }
        let changes = self.prepare(&state, author, desired, "desired")?;
        state::apply(&tx, &mut state, desired, &changes, actor, self.store.now()).await?;
        let after = state::load(&tx).await?;
        let outcome = Outcome { changes, etag: state::etag(&after.doc, &scope) };
        if let Some((actor_key, key)) = idempotency {
            idempotency_key::ActiveModel {
                actor_key_id: Set(actor_key),
                key: Set(key),
                request_hash: Set(request_hash),
                response: Set(serde_json::to_string(&outcome).unwrap_or_default()),
                created_at: Set(self.store.now()),
            }
            .insert(&tx)
            .await?;
        }
        tx.commit().await?;
        self.after_commit().await;
        Ok(outcome)
    }

    /// Changes one project's part of the state with `edit`, which sees the
    /// current state and returns user errors for impossible requests.
    ///
    /// # Errors
    /// [`OpError`] from `edit`, validation, permission or the database.
    pub async fn edit(
        &self,
        author: Author<'_>,
        actor: &Actor,
        project: &ProjectName,
        edit: impl FnOnce(&LoadedState, &mut StateDoc) -> OpResult<()>,
    ) -> OpResult<Outcome> {
        let tx = self.store.begin_write().await?;
        let mut state = state::load(&tx).await?;
        let scope = BTreeSet::from([project.clone()]);
        Self::check_scope(&state, author, &scope)?;
        let mut desired = state.doc.restricted_to(&scope);
        edit(&state, &mut desired)?;
        let changes = self.prepare(&state, author, &desired, "input")?;
        state::apply(&tx, &mut state, &desired, &changes, actor, self.store.now()).await?;
        let after = state::load(&tx).await?;
        tx.commit().await?;
        self.after_commit().await;
        Ok(Outcome { changes, etag: state::etag(&after.doc, &scope) })
    }

    /// Deletes a project with everything in it: models, services, keys.
    ///
    /// # Errors
    /// [`OpError`]: the built-in project, permission, an unknown project.
    pub async fn delete_project(&self, author: Author<'_>, actor: &Actor, project: &ProjectName) -> OpResult<Outcome> {
        if project.as_str() == DEFAULT_PROJECT {
            return Err(OpError::User(vec![UserError::new(
                "name",
                "PROTECTED",
                "the default project cannot be deleted",
            )]));
        }
        let tx = self.store.begin_write().await?;
        let mut state = state::load(&tx).await?;
        let id = *state.project_ids.get(project).ok_or_else(|| OpError::NotFound(format!("project {project}")))?;
        if !author.can_manage(id) {
            return Err(OpError::Forbidden(format!("this key may not manage project {project}")));
        }
        if let Author::Key(p) = author
            && p.project_id == id
        {
            return Err(OpError::User(vec![UserError::new(
                "name",
                "PROTECTED",
                "a key cannot delete its own project; use a key of another project with admin scope",
            )]));
        }
        let scope = BTreeSet::from([project.clone()]);
        let mut desired = state.doc.restricted_to(&scope);
        desired.services.clear();
        desired.models.clear();
        let mut changes = desired::plan(&state.doc, &desired);
        let project_decl = state.doc.projects.iter().find(|p| &p.name == project).cloned();
        changes.push(Change {
            action: ChangeAction::Delete,
            kind: ObjectKind::Project,
            project: project.clone(),
            name: project.to_string(),
            fields: project_decl
                .map(|p| {
                    desired::project_fields(&p)
                        .into_iter()
                        .map(|(field, v)| desired::FieldChange { field, before: Some(v), after: None })
                        .collect()
                })
                .unwrap_or_default(),
            destructive: true,
        });
        let now = self.store.now();
        keys::delete_for_project(&tx, id, actor, now).await?;
        desired.projects.clear();
        state::apply(&tx, &mut state, &desired, &changes, actor, now).await?;
        tx.commit().await?;
        self.keys.forget_project(id);
        self.after_commit().await;
        Ok(Outcome { changes, etag: String::new() })
    }

    async fn after_commit(&self) {
        if let Err(e) = self.registry.sync().await {
            tracing::warn!(error = %e, "Committed, but the serving side could not re-read the models yet");
        }
    }
}

/// Applies the server's own `--config` at start: the projects it names are
/// brought to exactly what it declares (nothing else is touched), each
/// change audited as `config`.
///
/// # Errors
/// [`OpError`] for a document that clashes with the stored state, or a failing database.
pub async fn apply_config(store: &Store, desired: &StateDoc) -> OpResult<Outcome> {
    let tx = store.begin_write().await?;
    let mut state = state::load(&tx).await?;
    let scope = desired.project_names();
    desired::validate(desired, &state.specs_outside(&scope))
        .map_err(|e| OpError::User(desired_errors(&e, "config")))?;
    let changes = desired::plan(&state.doc, desired);
    state::apply(&tx, &mut state, desired, &changes, &Actor::config(), store.now()).await?;
    let after = state::load(&tx).await?;
    tx.commit().await?;
    for c in &changes {
        tracing::info!(change = %c.address(), action = ?c.action, "Applied from --config");
    }
    Ok(Outcome { changes, etag: state::etag(&after.doc, &scope) })
}
