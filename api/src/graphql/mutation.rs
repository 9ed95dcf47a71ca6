//! Writes. Each mutation validates its input (problems come back as
//! `userErrors`, with nothing written), checks the key's scope, and makes its
//! change and the change's audit event in one transaction.

use async_graphql::{Context, ID, InputObject, Object};
use greenthread_core::desired::{ModelDecl, ProjectDecl, ServiceDecl, default_service};
use greenthread_core::engine::EngineSpec;
use greenthread_core::{
    ArtifactUri, ModelAlias, ModelName, ModelSpec, NameError, ProjectName, ServiceName, Sha256Digest, WarmTier,
    parse_duration,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::errors::{FORBIDDEN, coded, internal, principal, split};
use super::query::{readable_model, readable_project};
use super::types::{DeletePayload, Model, ModelPayload, Project, ProjectPayload, Service, ServicePayload, management};
use crate::manage::{Author, OpError, UserError};
use greenthread_store::auth::Principal;
use greenthread_store::entities::model;
use greenthread_store::{DEFAULT_SERVICE, state};

#[derive(Default)]
pub struct CoreMutation;

#[derive(InputObject)]
pub struct CreateProjectInput {
    pub name: String,
    pub description: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateProjectInput {
    pub name: String,
    pub description: Option<String>,
}

#[derive(InputObject)]
pub struct DeleteProjectInput {
    pub name: String,
}

#[derive(InputObject)]
pub struct CreateServiceInput {
    pub project: String,
    pub name: String,
    pub description: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateServiceInput {
    pub project: String,
    pub name: String,
    pub description: Option<String>,
}

#[derive(InputObject)]
pub struct DeleteServiceInput {
    pub project: String,
    pub name: String,
}

/// Scaling fields; those left out keep their value (defaults when creating).
#[derive(InputObject, Default)]
pub struct ScalingInput {
    pub min_replicas: Option<u32>,
    pub max_replicas: Option<u32>,
    /// `30s`, `5m`, `1h`.
    pub idle_timeout: Option<String>,
    /// `ram`, `disk` or `object`.
    pub warm_tier: Option<String>,
    pub never_preempt: Option<bool>,
    /// Sequences one replica runs at once (at least 1).
    pub max_concurrency: Option<u32>,
    /// Requests that may wait beyond those running; past it, 503 overloaded.
    pub max_queue: Option<u32>,
}

#[derive(InputObject)]
pub struct CreateModelInput {
    pub project: String,
    /// Defaults to the project's `default` service.
    pub service: Option<String>,
    pub name: String,
    /// An absolute path under the server's artifact directories, a `file://` URI, or an object-store URI.
    pub artifact: String,
    pub sha256: Option<String>,
    pub aliases: Option<Vec<String>>,
    pub context_length: Option<u32>,
    pub chat_template: Option<String>,
    /// What the model does; left out, its artifact decides.
    pub kind: Option<super::kind::GqlModelKind>,
    pub scaling: Option<ScalingInput>,
    /// The engine that serves it, as in a document's `engine:` (default
    /// `{"kind": "builtin"}`). Only admin keys may choose an external one.
    pub engine: Option<async_graphql::Json<serde_json::Value>>,
}

/// Fields left out keep their value; an empty `sha256` or `chatTemplate` clears it.
#[derive(InputObject)]
pub struct UpdateModelInput {
    pub name: String,
    pub service: Option<String>,
    pub artifact: Option<String>,
    pub sha256: Option<String>,
    pub aliases: Option<Vec<String>>,
    pub context_length: Option<u32>,
    pub chat_template: Option<String>,
    /// What the model does; left out, its artifact decides.
    pub kind: Option<super::kind::GqlModelKind>,
    pub scaling: Option<ScalingInput>,
    /// Replaces the engine (`{"kind": "builtin"}` goes back to the builtin one).
    pub engine: Option<async_graphql::Json<serde_json::Value>>,
}

#[derive(InputObject)]
pub struct DeleteModelInput {
    pub name: String,
}

/// Collects user errors while parsing an input.
#[derive(Default)]
struct Checked(Vec<UserError>);

impl Checked {
    /// A model, project or service name, as the caller expects.
    fn name<N: std::str::FromStr<Err = NameError>>(&mut self, raw: &str, field: &str) -> Option<N> {
        raw.parse::<N>().map_err(|e| self.0.push(UserError::new(field, "INVALID", e.to_string()))).ok()
    }

    fn artifact(&mut self, raw: &str, field: &str) -> Option<ArtifactUri> {
        ArtifactUri::parse(raw, None).map_err(|e| self.0.push(UserError::new(field, "INVALID", e.to_string()))).ok()
    }

    fn sha256(&mut self, raw: &str, field: &str) -> Option<Sha256Digest> {
        Sha256Digest::parse(raw).map_err(|e| self.0.push(UserError::new(field, "INVALID", e.to_string()))).ok()
    }

    fn aliases(&mut self, raw: &[String], field: &str) -> Vec<ModelAlias> {
        raw.iter()
            .filter_map(|a| {
                ModelAlias::parse(a).map_err(|e| self.0.push(UserError::new(field, "INVALID", e.to_string()))).ok()
            })
            .collect()
    }

    /// An engine as a document writes it; a field it cannot read is named.
    fn engine(&mut self, raw: serde_json::Value, field: &str) -> Option<EngineSpec> {
        serde_path_to_error::deserialize::<_, EngineSpec>(raw)
            .map_err(|e| {
                let at = e.path().to_string();
                let field = if at == "." { field.to_owned() } else { format!("{field}.{at}") };
                self.0.push(UserError::new(field, "INVALID", e.into_inner().to_string()));
            })
            .ok()
    }

    fn description(&mut self, raw: Option<String>, field: &str) -> Option<String> {
        match raw {
            Some(d) if d.len() > 2000 => {
                self.0.push(UserError::new(field, "INVALID", "at most 2000 characters"));
                None
            }
            other => other,
        }
    }

    fn scaling(&mut self, input: ScalingInput, spec: &mut ModelSpec) {
        let s = &mut spec.scaling;
        if let Some(v) = input.min_replicas {
            s.min_replicas = v;
            if input.max_replicas.is_none() {
                s.max_replicas = s.max_replicas.max(v);
            }
        }
        if let Some(v) = input.max_replicas {
            s.max_replicas = v;
        }
        if let Some(v) = input.idle_timeout {
            match parse_duration(&v) {
                Ok(d) => s.idle_timeout = d,
                Err(e) => self.0.push(UserError::new("input.scaling.idleTimeout", "INVALID", e.to_string())),
            }
        }
        if let Some(v) = input.warm_tier {
            match serde_json::from_value::<WarmTier>(serde_json::Value::String(v.clone())) {
                Ok(t) => s.warm_tier = t,
                Err(_) => self.0.push(UserError::new(
                    "input.scaling.warmTier",
                    "INVALID",
                    format!("{v:?} is not a tier: use ram, disk or object"),
                )),
            }
        }
        if let Some(v) = input.never_preempt {
            s.never_preempt = v;
        }
        match input.max_concurrency {
            Some(0) => self.0.push(UserError::new("input.scaling.maxConcurrency", "INVALID", "at least 1")),
            Some(v) => s.max_concurrency = Some(v),
            None => {}
        }
        if let Some(v) = input.max_queue {
            s.max_queue = Some(v);
        }
    }

    fn done(self) -> Result<(), Vec<UserError>> {
        if self.0.is_empty() { Ok(()) } else { Err(self.0) }
    }
}

pub(super) fn needs_manage(p: &Principal, project_id: Uuid) -> async_graphql::Result<()> {
    if p.can_manage(project_id) {
        Ok(())
    } else {
        Err(coded(FORBIDDEN, "this key has no manage scope for the project"))
    }
}

fn taken(field: &str) -> OpError {
    OpError::User(vec![UserError::new(field, "TAKEN", "the name is already taken")])
}

fn not_found(field: &str, what: impl std::fmt::Display) -> OpError {
    OpError::User(vec![UserError::new(field, "NOT_FOUND", format!("{what} not found"))])
}

async fn model_by_name(ctx: &Context<'_>, name: &str) -> async_graphql::Result<Option<Model>> {
    model::Entity::find()
        .filter(model::Column::Name.eq(name))
        .one(management(ctx).store.db())
        .await
        .map_err(internal)?
        .map(Model::from_row)
        .transpose()
}

#[Object]
impl CoreMutation {
    /// Creates a project with a `default` service (admin keys only).
    async fn create_project(
        &self,
        ctx: &Context<'_>,
        input: CreateProjectInput,
    ) -> async_graphql::Result<ProjectPayload> {
        let p = principal(ctx)?;
        let mut c = Checked::default();
        let name: Option<ProjectName> = c.name(&input.name, "input.name");
        let description = c.description(input.description, "input.description").unwrap_or_default();
        let name = match (c.done(), name) {
            (Ok(()), Some(n)) => n,
            (Err(errors), _) => return Ok(ProjectPayload::failed(errors)),
            (Ok(()), None) => return Ok(ProjectPayload::failed(checked_errors(&input.name))),
        };
        let result = management(ctx)
            .edit(Author::Key(p), &p.actor("graphql"), &name, |state, desired| {
                if state.project_ids.contains_key(&name) {
                    return Err(taken("input.name"));
                }
                desired.projects.push(ProjectDecl { name: name.clone(), description });
                desired.services.push(ServiceDecl {
                    project: name.clone(),
                    name: default_service(),
                    description: String::new(),
                });
                Ok(())
            })
            .await;
        match result {
            Ok(_) => Ok(ProjectPayload {
                project: Some(Project(readable_project(ctx, p, name.as_str()).await?)),
                user_errors: vec![],
            }),
            Err(e) => Ok(ProjectPayload::failed(split(e)?)),
        }
    }

    async fn update_project(
        &self,
        ctx: &Context<'_>,
        input: UpdateProjectInput,
    ) -> async_graphql::Result<ProjectPayload> {
        let p = principal(ctx)?;
        let row = readable_project(ctx, p, &input.name).await?;
        needs_manage(p, row.id)?;
        let mut c = Checked::default();
        let description = c.description(input.description, "input.description");
        if let Err(errors) = c.done() {
            return Ok(ProjectPayload::failed(errors));
        }
        let name = ProjectName::parse(&row.name).map_err(internal)?;
        let result = management(ctx)
            .edit(Author::Key(p), &p.actor("graphql"), &name, |_, desired| {
                if let (Some(d), Some(project)) = (description, desired.projects.iter_mut().find(|x| x.name == name)) {
                    project.description = d;
                }
                Ok(())
            })
            .await;
        match result {
            Ok(_) => Ok(ProjectPayload {
                project: Some(Project(readable_project(ctx, p, &input.name).await?)),
                user_errors: vec![],
            }),
            Err(e) => Ok(ProjectPayload::failed(split(e)?)),
        }
    }

    /// Deletes a project and everything in it: models, services and keys.
    async fn delete_project(
        &self,
        ctx: &Context<'_>,
        input: DeleteProjectInput,
    ) -> async_graphql::Result<DeletePayload> {
        let p = principal(ctx)?;
        let row = readable_project(ctx, p, &input.name).await?;
        needs_manage(p, row.id)?;
        let name = ProjectName::parse(&row.name).map_err(internal)?;
        match management(ctx).delete_project(Author::Key(p), &p.actor("graphql"), &name).await {
            Ok(_) => Ok(DeletePayload { deleted_id: Some(ID(row.id.to_string())), user_errors: vec![] }),
            Err(e) => Ok(DeletePayload::failed(split(e)?)),
        }
    }

    async fn create_service(
        &self,
        ctx: &Context<'_>,
        input: CreateServiceInput,
    ) -> async_graphql::Result<ServicePayload> {
        let p = principal(ctx)?;
        let project_row = readable_project(ctx, p, &input.project).await?;
        needs_manage(p, project_row.id)?;
        let mut c = Checked::default();
        let name: Option<ServiceName> = c.name(&input.name, "input.name");
        let description = c.description(input.description, "input.description").unwrap_or_default();
        let project = ProjectName::parse(&project_row.name).map_err(internal)?;
        let name = match (c.done(), name) {
            (Ok(()), Some(n)) => n,
            (Err(errors), _) => return Ok(ServicePayload::failed(errors)),
            (Ok(()), None) => return Ok(ServicePayload::failed(checked_errors(&input.name))),
        };
        let result = management(ctx)
            .edit(Author::Key(p), &p.actor("graphql"), &project, |_, desired| {
                if desired.services.iter().any(|s| s.name == name) {
                    return Err(taken("input.name"));
                }
                desired.services.push(ServiceDecl { project: project.clone(), name: name.clone(), description });
                Ok(())
            })
            .await;
        match result {
            Ok(_) => Ok(ServicePayload {
                service: service_row(ctx, project_row.id, name.as_str()).await?,
                user_errors: vec![],
            }),
            Err(e) => Ok(ServicePayload::failed(split(e)?)),
        }
    }

    async fn update_service(
        &self,
        ctx: &Context<'_>,
        input: UpdateServiceInput,
    ) -> async_graphql::Result<ServicePayload> {
        let p = principal(ctx)?;
        let project_row = readable_project(ctx, p, &input.project).await?;
        needs_manage(p, project_row.id)?;
        let mut c = Checked::default();
        let description = c.description(input.description, "input.description");
        if let Err(errors) = c.done() {
            return Ok(ServicePayload::failed(errors));
        }
        let project = ProjectName::parse(&project_row.name).map_err(internal)?;
        let result = management(ctx)
            .edit(Author::Key(p), &p.actor("graphql"), &project, |_, desired| {
                let service = desired
                    .services
                    .iter_mut()
                    .find(|s| s.name.as_str() == input.name)
                    .ok_or_else(|| not_found("input.name", format!("service {}", input.name)))?;
                if let Some(d) = description {
                    service.description = d;
                }
                Ok(())
            })
            .await;
        match result {
            Ok(_) => Ok(ServicePayload {
                service: service_row(ctx, project_row.id, &input.name).await?,
                user_errors: vec![],
            }),
            Err(e) => Ok(ServicePayload::failed(split(e)?)),
        }
    }

    /// Deletes an empty service (delete or move its models first).
    async fn delete_service(
        &self,
        ctx: &Context<'_>,
        input: DeleteServiceInput,
    ) -> async_graphql::Result<DeletePayload> {
        let p = principal(ctx)?;
        let project_row = readable_project(ctx, p, &input.project).await?;
        needs_manage(p, project_row.id)?;
        let project = ProjectName::parse(&project_row.name).map_err(internal)?;
        let existing = service_row(ctx, project_row.id, &input.name).await?;
        let result = management(ctx)
            .edit(Author::Key(p), &p.actor("graphql"), &project, |_, desired| {
                if !desired.services.iter().any(|s| s.name.as_str() == input.name) {
                    return Err(not_found("input.name", format!("service {}", input.name)));
                }
                if input.name == DEFAULT_SERVICE {
                    return Err(OpError::User(vec![UserError::new(
                        "input.name",
                        "PROTECTED",
                        "the default service cannot be deleted",
                    )]));
                }
                if desired.models.iter().any(|m| m.service.as_str() == input.name) {
                    return Err(OpError::User(vec![UserError::new(
                        "input.name",
                        "NOT_EMPTY",
                        "the service still has models; delete or move them first",
                    )]));
                }
                desired.services.retain(|s| s.name.as_str() != input.name);
                Ok(())
            })
            .await;
        match result {
            Ok(_) => Ok(DeletePayload { deleted_id: existing.map(|s| ID(s.0.id.to_string())), user_errors: vec![] }),
            Err(e) => Ok(DeletePayload::failed(split(e)?)),
        }
    }

    async fn create_model(&self, ctx: &Context<'_>, input: CreateModelInput) -> async_graphql::Result<ModelPayload> {
        let p = principal(ctx)?;
        let project_row = readable_project(ctx, p, &input.project).await?;
        needs_manage(p, project_row.id)?;
        let project = ProjectName::parse(&project_row.name).map_err(internal)?;
        let mut c = Checked::default();
        let name: Option<ModelName> = c.name(&input.name, "input.name");
        let service = match &input.service {
            Some(s) => c.name(s, "input.service"),
            None => Some(default_service()),
        };
        let artifact = c.artifact(&input.artifact, "input.artifact");
        let sha256 = input.sha256.as_deref().and_then(|s| c.sha256(s, "input.sha256"));
        let aliases = c.aliases(input.aliases.as_deref().unwrap_or_default(), "input.aliases");
        let (Some(name), Some(service), Some(artifact)) = (name, service, artifact) else {
            return Ok(ModelPayload::failed(c.0));
        };
        let mut spec = ModelSpec::new(name.clone(), artifact);
        spec.project = project.clone();
        spec.sha256 = sha256;
        spec.aliases = aliases;
        spec.context_length = input.context_length;
        spec.chat_template = input.chat_template;
        spec.kind = input.kind.map(Into::into);
        if let Some(engine) = input.engine.and_then(|e| c.engine(e.0, "input.engine")) {
            spec.engine = engine;
        }
        c.scaling(input.scaling.unwrap_or_default(), &mut spec);
        if let Err(errors) = c.done() {
            return Ok(ModelPayload::failed(errors));
        }
        let result = management(ctx)
            .edit(Author::Key(p), &p.actor("graphql"), &project, |state, desired| {
                if state.model_ids.contains_key(&name) {
                    return Err(taken("input.name"));
                }
                if !desired.services.iter().any(|s| s.name == service) {
                    return Err(not_found("input.service", format!("service {service}")));
                }
                desired.models.push(ModelDecl { service, spec });
                Ok(())
            })
            .await;
        match result {
            Ok(_) => Ok(ModelPayload { model: model_by_name(ctx, name.as_str()).await?, user_errors: vec![] }),
            Err(e) => Ok(ModelPayload::failed(split(e)?)),
        }
    }

    /// Changes a model. A new artifact, digest, context length or template
    /// restarts its replicas (requests meanwhile wait); scaling and aliases
    /// apply at once.
    async fn update_model(&self, ctx: &Context<'_>, input: UpdateModelInput) -> async_graphql::Result<ModelPayload> {
        let p = principal(ctx)?;
        let row = readable_model(ctx, p, &input.name).await?;
        needs_manage(p, row.project_id)?;
        let current = Model::from_row(row)?;
        let mut spec = current.spec.clone();
        let mut c = Checked::default();
        let service = input.service.as_deref().and_then(|s| c.name(s, "input.service"));
        if let Some(a) = &input.artifact
            && let Some(a) = c.artifact(a, "input.artifact")
        {
            spec.artifact = a;
        }
        match input.sha256.as_deref() {
            Some("") => spec.sha256 = None,
            Some(s) => spec.sha256 = c.sha256(s, "input.sha256").or(spec.sha256),
            None => {}
        }
        if let Some(a) = &input.aliases {
            spec.aliases = c.aliases(a, "input.aliases");
        }
        if let Some(n) = input.context_length {
            spec.context_length = Some(n);
        }
        match input.chat_template {
            Some(t) if t.is_empty() => spec.chat_template = None,
            Some(t) => spec.chat_template = Some(t),
            None => {}
        }
        if let Some(kind) = input.kind {
            spec.kind = Some(kind.into());
        }
        if let Some(engine) = input.engine.and_then(|e| c.engine(e.0, "input.engine")) {
            spec.engine = engine;
        }
        c.scaling(input.scaling.unwrap_or_default(), &mut spec);
        if let Err(errors) = c.done() {
            return Ok(ModelPayload::failed(errors));
        }
        let project = spec.project.clone();
        let result = management(ctx)
            .edit(Author::Key(p), &p.actor("graphql"), &project, |_, desired| {
                if let Some(s) = &service
                    && !desired.services.iter().any(|x| &x.name == s)
                {
                    return Err(not_found("input.service", format!("service {s}")));
                }
                let decl = desired
                    .models
                    .iter_mut()
                    .find(|m| m.spec.name == spec.name)
                    .ok_or_else(|| not_found("input.name", format!("model {}", spec.name)))?;
                if let Some(s) = service {
                    decl.service = s;
                }
                decl.spec = spec;
                Ok(())
            })
            .await;
        match result {
            Ok(_) => Ok(ModelPayload { model: model_by_name(ctx, &input.name).await?, user_errors: vec![] }),
            Err(e) => Ok(ModelPayload::failed(split(e)?)),
        }
    }

    /// Deletes a model: requests waiting for it fail, requests in flight finish.
    async fn delete_model(&self, ctx: &Context<'_>, input: DeleteModelInput) -> async_graphql::Result<DeletePayload> {
        let p = principal(ctx)?;
        let row = readable_model(ctx, p, &input.name).await?;
        needs_manage(p, row.project_id)?;
        let project = Model::from_row(row.clone())?.spec.project;
        let result = management(ctx)
            .edit(Author::Key(p), &p.actor("graphql"), &project, |_, desired| {
                desired.models.retain(|m| m.spec.name.as_str() != input.name);
                Ok(())
            })
            .await;
        match result {
            Ok(_) => Ok(DeletePayload { deleted_id: Some(ID(row.id.to_string())), user_errors: vec![] }),
            Err(e) => Ok(DeletePayload::failed(split(e)?)),
        }
    }
}

fn checked_errors(raw: &str) -> Vec<UserError> {
    let message = ModelName::parse(raw).err().map_or_else(|| "invalid name".to_owned(), |e| e.to_string());
    vec![UserError::new("input.name", "INVALID", message)]
}

async fn service_row(ctx: &Context<'_>, project_id: Uuid, name: &str) -> async_graphql::Result<Option<Service>> {
    state::service_by_name(management(ctx).store.db(), project_id, name).await.map(|s| s.map(Service)).map_err(internal)
}
