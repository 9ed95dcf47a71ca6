//! Reads. Every list is limited to what the caller's key may read: its own
//! project, or every project for an admin key. Something the caller may not
//! read is NOT_FOUND, exactly like something that does not exist, unless it is
//! the key's own project (then FORBIDDEN: the key lacks the scope).

use async_graphql::connection::Connection;
use async_graphql::{Context, ID, InputObject, Object};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::errors::{BAD_USER_INPUT, FORBIDDEN, NOT_FOUND, coded, internal, principal};
use super::pagination::{decode, page, page_size};
use super::types::{ApiKey, AuditEvent, Model, Node, NodeTier, Project, Scheduler, Viewer, management};
use super::usage::{self, UsageBucket, UsageGroup, UsagePoint, UsageRecord};
use greenthread_store::audit::{self, AuditFilter};
use greenthread_store::auth::Principal;
use greenthread_store::entities::{model, project};
use greenthread_store::keys;

#[derive(Default)]
pub struct CoreQuery;

/// Most time buckets one usage query may ask for.
const MAX_BUCKETS: i64 = 10_000;
/// Most records one `usageRecords` query returns.
const MAX_USAGE_RECORDS: u32 = 1_000;

/// Which audit events to list.
#[derive(InputObject, Default)]
pub struct AuditEventFilter {
    /// `model.create`, `api_key.revoke`, …
    pub action: Option<String>,
    /// `project`, `service`, `model` or `api_key`.
    pub object_type: Option<String>,
    pub object_id: Option<ID>,
    pub actor_key_id: Option<ID>,
    /// Only this project's events (a name).
    pub project: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

fn parse_id(id: &ID, field: &str) -> async_graphql::Result<Uuid> {
    Uuid::parse_str(id.as_str()).map_err(|_| coded(BAD_USER_INPUT, format!("{field}: {:?} is not an id", id.as_str())))
}

/// The project named `name`, if the caller may read it.
pub async fn readable_project(ctx: &Context<'_>, p: &Principal, name: &str) -> async_graphql::Result<project::Model> {
    let row = greenthread_store::state::project_by_name(management(ctx).store.db(), name).await.map_err(internal)?;
    let row = row.ok_or_else(|| coded(NOT_FOUND, format!("project {name} not found")))?;
    may_read(p, row.id, || format!("project {name} not found"))?;
    Ok(row)
}

/// Whether `p` may read something of `project`: NOT_FOUND (`missing`) when
/// it is another project's, FORBIDDEN when it is the key's own project but
/// the key cannot read (an `inference` key: there is nothing to hide from it).
///
/// # Errors
/// NOT_FOUND or FORBIDDEN as above.
pub fn may_read(p: &Principal, project: Uuid, missing: impl FnOnce() -> String) -> async_graphql::Result<()> {
    if p.can_read(project) {
        Ok(())
    } else if project == p.project_id {
        Err(no_read_scope())
    } else {
        Err(coded(NOT_FOUND, missing()))
    }
}

/// Refusal for a key of the project that lacks the scope to read it (an
/// `inference` key): the project is its own, so there is nothing to hide.
fn no_read_scope() -> async_graphql::Error {
    coded(FORBIDDEN, "this key has no read scope (it needs read, manage or admin)")
}

/// The model named `name`, if the caller may read its project.
pub async fn readable_model(ctx: &Context<'_>, p: &Principal, name: &str) -> async_graphql::Result<model::Model> {
    let row = model::Entity::find()
        .filter(model::Column::Name.eq(name))
        .one(management(ctx).store.db())
        .await
        .map_err(internal)?;
    let row = row.ok_or_else(|| coded(NOT_FOUND, format!("model {name} not found")))?;
    may_read(p, row.project_id, || format!("model {name} not found"))?;
    Ok(row)
}

fn needs_read(p: &Principal) -> async_graphql::Result<()> {
    use greenthread_store::auth::Scope;
    if p.is_admin() || p.has(Scope::Read) || p.has(Scope::Manage) { Ok(()) } else { Err(no_read_scope()) }
}

#[Object]
impl CoreQuery {
    /// The key making this request and its project.
    async fn viewer(&self, ctx: &Context<'_>) -> async_graphql::Result<Viewer> {
        let p = principal(ctx)?;
        let project = project::Entity::find_by_id(p.project_id)
            .one(management(ctx).store.db())
            .await
            .map_err(internal)?
            .ok_or_else(|| internal("the key's project is missing"))?;
        Ok(Viewer {
            key_id: ID(p.key_id.to_string()),
            key_name: p.key_name.clone(),
            key_hint: p.key_hint.clone(),
            scopes: p.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            project: Project(project),
        })
    }

    /// Projects the caller may read.
    #[graphql(complexity = "super::pagination::weight(first, child_complexity)")]
    async fn projects(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Project>> {
        let p = principal(ctx)?;
        needs_read(p)?;
        let rows = project::Entity::find().all(management(ctx).store.db()).await.map_err(internal)?;
        page(rows.into_iter().filter(|r| p.can_read(r.id)).map(|r| (r.id, Project(r))).collect(), first, after)
    }

    async fn project(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<Project> {
        let p = principal(ctx)?;
        needs_read(p)?;
        Ok(Project(readable_project(ctx, p, &name).await?))
    }

    async fn model(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<Model> {
        let p = principal(ctx)?;
        needs_read(p)?;
        Model::from_row(readable_model(ctx, p, &name).await?)
    }

    /// Models the caller may read, optionally of one project.
    #[graphql(complexity = "super::pagination::weight(first, child_complexity)")]
    async fn models(
        &self,
        ctx: &Context<'_>,
        project: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Model>> {
        let p = principal(ctx)?;
        needs_read(p)?;
        let mut q = model::Entity::find();
        if let Some(name) = &project {
            q = q.filter(model::Column::ProjectId.eq(readable_project(ctx, p, name).await?.id));
        }
        let rows = q.all(management(ctx).store.db()).await.map_err(internal)?;
        let models = rows
            .into_iter()
            .filter(|r| p.can_read(r.project_id))
            .map(Model::from_row)
            .collect::<async_graphql::Result<Vec<_>>>()?;
        page(models.into_iter().map(|m| (m.row.id, m)).collect(), first, after)
    }

    /// API keys the caller may read (never their secrets), optionally of one project.
    #[graphql(complexity = "super::pagination::weight(first, child_complexity)")]
    async fn api_keys(
        &self,
        ctx: &Context<'_>,
        project: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, ApiKey>> {
        let p = principal(ctx)?;
        needs_read(p)?;
        let projects = match &project {
            Some(name) => Some(vec![readable_project(ctx, p, name).await?.id]),
            None => p.readable_projects(),
        };
        let rows = keys::list(management(ctx).store.db(), projects).await.map_err(internal)?;
        page(rows.into_iter().map(|r| (r.id, ApiKey(r))).collect(), first, after)
    }

    /// The audit log, newest first.
    #[graphql(complexity = "super::pagination::weight(first, child_complexity)")]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        filter: Option<AuditEventFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, AuditEvent>> {
        let p = principal(ctx)?;
        needs_read(p)?;
        let f = filter.unwrap_or_default();
        let projects = match &f.project {
            Some(name) => Some(vec![readable_project(ctx, p, name).await?.id]),
            None => p.readable_projects(),
        };
        let query = AuditFilter {
            projects,
            action: f.action,
            object_type: f.object_type,
            object_id: f.object_id.as_ref().map(|id| parse_id(id, "filter.objectId")).transpose()?,
            actor_key_id: f.actor_key_id.as_ref().map(|id| parse_id(id, "filter.actorKeyId")).transpose()?,
            since: f.since,
            until: f.until,
        };
        let size = page_size(first)?;
        let before = after.as_deref().map(decode).transpose()?;
        let mut rows =
            audit::list(management(ctx).store.db(), &query, before, size as u64 + 1).await.map_err(internal)?;
        let has_next = rows.len() > size;
        rows.truncate(size);
        let mut connection = Connection::new(before.is_some(), has_next);
        connection.edges.extend(
            rows.into_iter()
                .map(|r| async_graphql::connection::Edge::new(super::pagination::cursor(r.id), AuditEvent(r))),
        );
        Ok(connection)
    }

    /// Requests and tokens in time buckets, grouped by model or by key: of
    /// one project, or of every project the caller may read.
    async fn usage(
        &self,
        ctx: &Context<'_>,
        project: Option<String>,
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
        #[graphql(default_with = "UsageBucket::Hour")] bucket: UsageBucket,
        #[graphql(default_with = "UsageGroup::Model")] group_by: UsageGroup,
    ) -> async_graphql::Result<Vec<UsagePoint>> {
        let p = principal(ctx)?;
        needs_read(p)?;
        let store = &management(ctx).store;
        // By default up to and including this moment.
        let until = until.unwrap_or_else(|| store.now() + chrono::TimeDelta::seconds(1));
        if until <= since {
            return Err(coded(BAD_USER_INPUT, "until must be after since"));
        }
        let width = match bucket {
            UsageBucket::Minute => 60,
            UsageBucket::Hour => 3_600,
            UsageBucket::Day => 86_400,
        };
        if (until - since).num_seconds() / width > MAX_BUCKETS {
            return Err(coded(
                BAD_USER_INPUT,
                format!("at most {MAX_BUCKETS} buckets: use a wider bucket or a shorter range"),
            ));
        }
        let projects = usage_projects(ctx, p, project.as_deref()).await?;
        usage::points(store.db(), &projects, since, until, bucket, group_by).await.map_err(internal)
    }

    /// Single requests' usage records, newest first: of one project or every
    /// project the caller may read, since `since`, of one `x-request-id`
    /// when `requestId` is given.
    async fn usage_records(
        &self,
        ctx: &Context<'_>,
        project: Option<String>,
        since: DateTime<Utc>,
        request_id: Option<String>,
        #[graphql(default = 100)] limit: u32,
    ) -> async_graphql::Result<Vec<UsageRecord>> {
        let p = principal(ctx)?;
        needs_read(p)?;
        if limit == 0 || limit > MAX_USAGE_RECORDS {
            return Err(coded(BAD_USER_INPUT, format!("limit must be between 1 and {MAX_USAGE_RECORDS}")));
        }
        let projects = usage_projects(ctx, p, project.as_deref()).await?;
        let db = management(ctx).store.db();
        usage::records(db, &projects, since, request_id.as_deref(), u64::from(limit)).await.map_err(internal)
    }

    /// The scheduler's nodes and their devices (admin keys only).
    async fn nodes(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Node>> {
        let p = principal(ctx)?;
        if !p.is_admin() {
            return Err(coded(FORBIDDEN, "only an admin key may list nodes"));
        }
        let Some(scheduler) = &ctx.data_unchecked::<Scheduler>().0 else { return Ok(Vec::new()) };
        let status = scheduler.status().await.map_err(super::errors::scheduler_error)?;
        Ok(status
            .nodes
            .into_iter()
            .map(|n| Node {
                id: n.id.to_string(),
                device_budget_bytes: n.device_budget,
                device_used_bytes: n.device_used,
                tiers: n
                    .tiers
                    .into_iter()
                    .map(|t| NodeTier { tier: t.tier.to_string(), budget_bytes: t.budget, used_bytes: t.used })
                    .collect(),
            })
            .collect())
    }
}

/// The projects a usage query reads: the one named, or all the caller may read.
async fn usage_projects(ctx: &Context<'_>, p: &Principal, project: Option<&str>) -> async_graphql::Result<Vec<Uuid>> {
    Ok(match project {
        Some(name) => vec![readable_project(ctx, p, name).await?.id],
        None => match p.readable_projects() {
            Some(own) => own,
            None => project::Entity::find()
                .all(management(ctx).store.db())
                .await
                .map_err(internal)?
                .into_iter()
                .map(|r| r.id)
                .collect(),
        },
    })
}
