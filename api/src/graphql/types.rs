//! The objects of the schema: thin views of stored rows and of the
//! scheduler's state.

use std::sync::Arc;

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, ID, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use greenthread_core::ModelSpec;
use greenthread_core::desired::{self, ChangeAction, ObjectKind};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::errors::internal;
use super::pagination::page;
pub use super::runtime::{ModelRuntime, WakeProgressInfo, tier_of};
use crate::cluster::MAX_LOG_LINES;
use crate::manage::{Management, UserError};
use greenthread_store::entities::{api_key, audit_event, model, project, service};

/// The scheduler, where this server runs one.
pub struct Scheduler(pub Option<crate::scheduler_link::SchedulerLink>);

/// Where `Model.logs` reads external engines' output: this server's own
/// node, then the cluster's nodes that hold the model.
pub struct EngineLogs {
    pub node: Option<greenthread_node_runtime::node::LocalNode>,
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// The scheduler's status, read once per GraphQL request however many
/// models of the answer ask for it (for a gateway, one round trip).
#[derive(Default)]
pub struct StatusOnce(
    pub tokio::sync::OnceCell<Result<greenthread_scheduler::ManagerStatus, crate::scheduler_link::LinkError>>,
);

pub fn management<'a>(ctx: &'a Context<'_>) -> &'a Arc<Management> {
    ctx.data_unchecked::<Arc<Management>>()
}

async fn project_row(ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<Project> {
    project::Entity::find_by_id(id)
        .one(management(ctx).store.db())
        .await
        .map_err(internal)?
        .map(Project)
        .ok_or_else(|| internal(format!("project {id} is missing")))
}

pub struct Project(pub project::Model);

#[Object]
impl Project {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// Object-store prefixes (`s3://bucket/folder/`) this project's models
    /// may read from; set by admins (`setArtifactPrefixes`).
    async fn artifact_prefixes(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        greenthread_store::prefixes::of_project(management(ctx).store.db(), self.0.id).await.map_err(internal)
    }
    /// This project as the document `plan` and `apply` take: its
    /// description, services and models, with absolute artifacts. Change it
    /// and plan it to change the project, as a deploy form does.
    async fn desired(&self, ctx: &Context<'_>) -> async_graphql::Result<Json<serde_json::Value>> {
        let state = greenthread_store::state::load(management(ctx).store.db()).await.map_err(internal)?;
        let scope = state.project_name(self.0.id).cloned().into_iter().collect();
        Ok(Json(crate::config::to_json(&state.doc.restricted_to(&scope))))
    }
    #[graphql(complexity = "super::pagination::weight(first, child_complexity)")]
    async fn services(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Service>> {
        let rows = service::Entity::find()
            .filter(service::Column::ProjectId.eq(self.0.id))
            .all(management(ctx).store.db())
            .await
            .map_err(internal)?;
        page(rows.into_iter().map(|r| (r.id, Service(r))).collect(), first, after)
    }
    #[graphql(complexity = "super::pagination::weight(first, child_complexity)")]
    async fn models(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Model>> {
        let rows = model::Entity::find()
            .filter(model::Column::ProjectId.eq(self.0.id))
            .all(management(ctx).store.db())
            .await
            .map_err(internal)?;
        let models = rows.into_iter().map(Model::from_row).collect::<async_graphql::Result<Vec<_>>>()?;
        page(models.into_iter().map(|m| (m.row.id, m)).collect(), first, after)
    }
}

pub struct Service(pub service::Model);

#[Object]
impl Service {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn project(&self, ctx: &Context<'_>) -> async_graphql::Result<Project> {
        project_row(ctx, self.0.project_id).await
    }
    #[graphql(complexity = "super::pagination::weight(first, child_complexity)")]
    async fn models(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Model>> {
        let rows = model::Entity::find()
            .filter(model::Column::ServiceId.eq(self.0.id))
            .all(management(ctx).store.db())
            .await
            .map_err(internal)?;
        let models = rows.into_iter().map(Model::from_row).collect::<async_graphql::Result<Vec<_>>>()?;
        page(models.into_iter().map(|m| (m.row.id, m)).collect(), first, after)
    }
}

/// When a model holds device memory.
#[derive(SimpleObject)]
pub struct Scaling {
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// Idle time before it sleeps, as written in documents (`5m`).
    pub idle_timeout: String,
    pub idle_timeout_seconds: f64,
    /// Where its weights wait while it sleeps: `ram`, `disk` or `object`.
    pub warm_tier: String,
    pub never_preempt: bool,
    /// Sequences one replica runs at once, as set or the engine's default.
    pub max_concurrency: u32,
    /// Requests that may wait beyond those running, as set or by default.
    pub max_queue: u32,
}

pub struct Model {
    pub row: model::Model,
    pub spec: ModelSpec,
}

impl Model {
    pub fn from_row(row: model::Model) -> async_graphql::Result<Self> {
        let spec = serde_json::from_str(&row.spec).map_err(internal)?;
        Ok(Self { row, spec })
    }
}

#[Object]
impl Model {
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }
    /// The model's URL slug and `"model"` value.
    async fn name(&self) -> &str {
        &self.row.name
    }
    async fn aliases(&self) -> Vec<String> {
        self.spec.aliases.iter().map(ToString::to_string).collect()
    }
    async fn artifact(&self) -> String {
        self.spec.artifact.to_string()
    }
    async fn sha256(&self) -> Option<String> {
        self.spec.sha256.as_ref().map(ToString::to_string)
    }
    async fn context_length(&self) -> Option<u32> {
        self.spec.context_length
    }
    async fn chat_template(&self) -> Option<&str> {
        self.spec.chat_template.as_deref()
    }
    /// What the model does: as its spec declares it, else as its artifact
    /// shows where this server holds it; `null` when neither is known here
    /// (a gateway, for an undeclared model).
    async fn kind(&self, ctx: &Context<'_>) -> Option<super::kind::GqlModelKind> {
        let held = || {
            let node = ctx.data_unchecked::<EngineLogs>().node.as_ref()?;
            Some(node.instance(&self.spec.name)?.info().kind)
        };
        self.spec.kind.or_else(held).map(super::kind::GqlModelKind::of)
    }
    /// The kind of engine that serves it: `builtin`, `llama-server`, `vllm`, `sglang` or `command`.
    async fn engine(&self) -> &'static str {
        self.spec.engine.kind()
    }
    /// The whole engine spec, as a document writes it.
    async fn engine_spec(&self) -> Json<serde_json::Value> {
        Json(serde_json::to_value(&self.spec.engine).unwrap_or_default())
    }
    async fn scaling(&self) -> Scaling {
        let s = &self.spec.scaling;
        let admission = s.admission(&self.spec.engine);
        Scaling {
            min_replicas: s.min_replicas,
            max_replicas: s.max_replicas,
            idle_timeout: greenthread_core::format_duration(s.idle_timeout),
            idle_timeout_seconds: s.idle_timeout.as_secs_f64(),
            warm_tier: serde_json::to_value(s.warm_tier)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            never_preempt: s.never_preempt,
            max_concurrency: admission.concurrency,
            max_queue: admission.queue,
        }
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.row.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.row.updated_at
    }
    async fn project(&self, ctx: &Context<'_>) -> async_graphql::Result<Project> {
        project_row(ctx, self.row.project_id).await
    }
    async fn service(&self, ctx: &Context<'_>) -> async_graphql::Result<Service> {
        service::Entity::find_by_id(self.row.service_id)
            .one(management(ctx).store.db())
            .await
            .map_err(internal)?
            .map(Service)
            .ok_or_else(|| internal("a model's service is missing"))
    }
    /// The last lines its external engine wrote (on this server's node, else
    /// on a node of the cluster holding it), oldest first, stdout and stderr
    /// together; empty for the builtin engine. Needs the manage scope:
    /// engines print their configuration.
    async fn logs(&self, ctx: &Context<'_>, #[graphql(default = 100)] last: u32) -> async_graphql::Result<Vec<String>> {
        let p = super::errors::principal(ctx)?;
        super::mutation::needs_manage(p, self.row.project_id)?;
        let last = last.min(MAX_LOG_LINES);
        let sources = ctx.data_unchecked::<EngineLogs>();
        if let Some(lines) = sources.node.as_ref().and_then(|n| n.engine_logs(&self.spec.name, last as usize)) {
            return Ok(lines);
        }
        match &sources.cluster {
            Some(cluster) => Ok(cluster.engine_logs(&self.spec.name, last).await),
            None => Ok(Vec::new()),
        }
    }
    /// Its last hour as this server saw it (the console's model page).
    async fn last_hour(&self) -> super::recent::LastHour {
        super::recent::LastHour { model: self.row.name.clone() }
    }
    /// Its state on the scheduler; null where this server runs none, or
    /// while a cluster's scheduler changes leaders.
    async fn runtime(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ModelRuntime>> {
        use crate::scheduler_link::LinkError;
        let Some(scheduler) = &ctx.data_unchecked::<Scheduler>().0 else { return Ok(None) };
        let fetched;
        let status = match ctx.data_opt::<StatusOnce>() {
            Some(once) => once.0.get_or_init(|| scheduler.status()).await,
            None => {
                fetched = scheduler.status().await;
                &fetched
            }
        };
        match status {
            Ok(s) => Ok(s.models.iter().find(|m| m.name.as_str() == self.row.name).map(ModelRuntime::from)),
            Err(LinkError::NoLeader(_)) => Ok(None),
            Err(e) => Err(internal(e)),
        }
    }
}

pub struct ApiKey(pub api_key::Model);

#[Object]
impl ApiKey {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn scopes(&self) -> Vec<&str> {
        self.0.scopes.split(' ').filter(|s| !s.is_empty()).collect()
    }
    /// The secret's first and last characters, to recognise it by.
    async fn hint(&self) -> &str {
        &self.0.secret_hint
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at
    }
    async fn requests_per_minute(&self) -> Option<i32> {
        self.0.requests_per_minute
    }
    async fn tokens_per_minute(&self) -> Option<i32> {
        self.0.tokens_per_minute
    }
    async fn max_concurrent_requests(&self) -> Option<i32> {
        self.0.max_concurrent_requests
    }
    async fn created_by(&self) -> Option<ID> {
        self.0.created_by.map(|id| ID(id.to_string()))
    }
    async fn project(&self, ctx: &Context<'_>) -> async_graphql::Result<Project> {
        project_row(ctx, self.0.project_id).await
    }
}

pub struct AuditEvent(pub audit_event::Model);

#[Object]
impl AuditEvent {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    /// The key that made the change (null for the server's own `--config`).
    async fn actor_key_id(&self) -> Option<ID> {
        self.0.actor_key_id.map(|id| ID(id.to_string()))
    }
    async fn actor(&self) -> &str {
        &self.0.actor
    }
    /// `model.create`, `api_key.revoke`, …
    async fn action(&self) -> &str {
        &self.0.action
    }
    async fn object_type(&self) -> &str {
        &self.0.object_type
    }
    async fn object_id(&self) -> Option<ID> {
        self.0.object_id.map(|id| ID(id.to_string()))
    }
    async fn object_name(&self) -> Option<&str> {
        self.0.object_name.as_deref()
    }
    async fn project_id(&self) -> Option<ID> {
        self.0.project_id.map(|id| ID(id.to_string()))
    }
    /// The object before the change, secrets redacted.
    async fn before(&self) -> Option<Json<serde_json::Value>> {
        self.0.before.clone().map(Json)
    }
    /// The object after the change, secrets redacted.
    async fn after(&self) -> Option<Json<serde_json::Value>> {
        self.0.after.clone().map(Json)
    }
    /// `graphql`, `apply` or `config`.
    async fn via(&self) -> &str {
        &self.0.via
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "ChangeAction")]
pub enum GqlChangeAction {
    Create,
    Update,
    Delete,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "ObjectKind")]
pub enum GqlObjectKind {
    Project,
    Service,
    Model,
}

#[derive(SimpleObject)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<Json<serde_json::Value>>,
    pub after: Option<Json<serde_json::Value>>,
}

/// One object a plan creates, updates or deletes.
#[derive(SimpleObject)]
pub struct Change {
    pub action: GqlChangeAction,
    pub kind: GqlObjectKind,
    /// `project/acme`, `service/acme/chat`, `model/llama`.
    pub address: String,
    pub project: String,
    pub name: String,
    pub fields: Vec<FieldChange>,
    /// Deletes something, or restarts a running model.
    pub destructive: bool,
}

impl From<&desired::Change> for Change {
    fn from(c: &desired::Change) -> Self {
        Self {
            action: match c.action {
                ChangeAction::Create => GqlChangeAction::Create,
                ChangeAction::Update => GqlChangeAction::Update,
                ChangeAction::Delete => GqlChangeAction::Delete,
            },
            kind: match c.kind {
                ObjectKind::Project => GqlObjectKind::Project,
                ObjectKind::Service => GqlObjectKind::Service,
                ObjectKind::Model => GqlObjectKind::Model,
            },
            address: c.address(),
            project: c.project.to_string(),
            name: c.name.to_string(),
            fields: c
                .fields
                .iter()
                .map(|f| FieldChange {
                    field: f.field.clone(),
                    before: f.before.clone().map(Json),
                    after: f.after.clone().map(Json),
                })
                .collect(),
            destructive: c.destructive,
        }
    }
}

/// A node, its device and its RAM and disk tiers.
#[derive(SimpleObject)]
pub struct Node {
    pub id: String,
    pub device_budget_bytes: u64,
    pub device_used_bytes: u64,
    /// Where sleeping models' weights wait: `ram` and `disk`.
    pub tiers: Vec<NodeTier>,
}

/// One tier of one node.
#[derive(SimpleObject)]
pub struct NodeTier {
    /// `ram` or `disk`.
    pub tier: String,
    pub budget_bytes: u64,
    pub used_bytes: u64,
}

/// The caller.
#[derive(SimpleObject)]
pub struct Viewer {
    pub key_id: ID,
    pub key_name: String,
    pub key_hint: String,
    pub scopes: Vec<String>,
    pub project: Project,
}

macro_rules! payload {
    ($name:ident, $field:ident: $ty:ty) => {
        #[derive(SimpleObject)]
        pub struct $name {
            pub $field: Option<$ty>,
            pub user_errors: Vec<UserError>,
        }

        impl $name {
            pub fn failed(user_errors: Vec<UserError>) -> Self {
                Self { $field: None, user_errors }
            }
        }
    };
}

payload!(ProjectPayload, project: Project);
payload!(ServicePayload, service: Service);
payload!(ModelPayload, model: Model);

#[derive(SimpleObject)]
pub struct RevokeApiKeyPayload {
    /// The revoked key.
    pub api_key: Option<ApiKey>,
    /// The key created in its place, when the input asked for one.
    pub replacement: Option<CreateApiKeyPayload>,
    pub user_errors: Vec<UserError>,
}

impl RevokeApiKeyPayload {
    pub fn failed(user_errors: Vec<UserError>) -> Self {
        Self { api_key: None, replacement: None, user_errors }
    }
}
payload!(DeletePayload, deleted_id: ID);

#[derive(SimpleObject)]
pub struct CreateApiKeyPayload {
    pub api_key: Option<ApiKey>,
    /// The key's secret: shown here once, never stored.
    pub secret: Option<String>,
    pub user_errors: Vec<UserError>,
}

#[derive(SimpleObject)]
pub struct PlanPayload {
    pub changes: Vec<Change>,
    /// The etag of the planned projects' current state: pass it to `apply`.
    pub etag: Option<String>,
    pub user_errors: Vec<UserError>,
}

#[derive(SimpleObject)]
pub struct ApplyPayload {
    /// Whether the changes were made (false: see userErrors).
    pub applied: bool,
    pub changes: Vec<Change>,
    /// The etag after the changes.
    pub etag: Option<String>,
    pub user_errors: Vec<UserError>,
}

/// One state change of a model.
#[derive(SimpleObject, Clone)]
pub struct ModelEvent {
    pub model: String,
    pub project: String,
    pub node: String,
    pub from: String,
    pub to: String,
    /// The tier after the change (`device` while awake).
    pub tier: Option<String>,
    /// `request`, `idle`, `preempted`, `startup`, `failure`, `updated` or `operator`.
    pub cause: String,
    /// How long it was in `from`, in milliseconds.
    pub after_ms: f64,
    pub at: DateTime<Utc>,
    /// On a `progress` event (`from` and `to` both `waking`, sent every
    /// second while a model wakes): how far the wake has come.
    pub progress: Option<WakeProgressInfo>,
}
