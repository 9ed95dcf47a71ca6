//! Custom domains through GraphQL: add one to a service, verify it through
//! its TXT record, remove it.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter};
use serde_json::json;
use uuid::Uuid;

use super::errors::{NOT_FOUND, coded, internal, principal};
use super::mutation::needs_manage;
use super::query::readable_project;
use super::types::{DeletePayload, Project, Service, management};
use crate::domains::{challenge_name, new_token, parse_hostname};
use crate::manage::UserError;
use greenthread_store::audit;
use greenthread_store::entities::{domain, project, service};

/// The TXT record that proves a domain.
#[derive(SimpleObject)]
pub struct VerificationRecord {
    /// `_greenthread-challenge.<hostname>`
    pub name: String,
    /// Always `TXT`.
    pub kind: String,
    pub value: String,
}

pub struct Domain(pub domain::Model);

#[Object]
impl Domain {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn hostname(&self) -> &str {
        &self.0.hostname
    }
    /// Requests to the hostname are routed once this is true.
    async fn verified(&self) -> bool {
        self.0.verified_at.is_some()
    }
    async fn verified_at(&self) -> Option<DateTime<Utc>> {
        self.0.verified_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// Publish this record in the domain's DNS, then call `verifyDomain`.
    async fn verification_record(&self) -> VerificationRecord {
        VerificationRecord { name: challenge_name(&self.0.hostname), kind: "TXT".into(), value: self.0.token.clone() }
    }
    async fn project(&self, ctx: &Context<'_>) -> async_graphql::Result<Project> {
        project::Entity::find_by_id(self.0.project_id)
            .one(management(ctx).store.db())
            .await
            .map_err(internal)?
            .map(Project)
            .ok_or_else(|| internal("a domain's project is missing"))
    }
    async fn service(&self, ctx: &Context<'_>) -> async_graphql::Result<Service> {
        service::Entity::find_by_id(self.0.service_id)
            .one(management(ctx).store.db())
            .await
            .map_err(internal)?
            .map(Service)
            .ok_or_else(|| internal("a domain's service is missing"))
    }
}

#[derive(SimpleObject)]
pub struct DomainPayload {
    pub domain: Option<Domain>,
    pub user_errors: Vec<UserError>,
}

impl DomainPayload {
    fn failed(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self { domain: None, user_errors: vec![UserError::new(field, code, message)] }
    }
}

#[derive(InputObject)]
pub struct AddDomainInput {
    pub project: String,
    pub service: String,
    pub hostname: String,
}

#[derive(InputObject)]
pub struct DomainInput {
    pub hostname: String,
}

#[derive(Default)]
pub struct DomainQuery;

#[Object]
impl DomainQuery {
    /// Custom domains of one project, or of every project the caller may read.
    async fn domains(&self, ctx: &Context<'_>, project: Option<String>) -> async_graphql::Result<Vec<Domain>> {
        let p = principal(ctx)?;
        let mut q = domain::Entity::find();
        if let Some(name) = &project {
            q = q.filter(domain::Column::ProjectId.eq(readable_project(ctx, p, name).await?.id));
        }
        let rows = q.all(management(ctx).store.db()).await.map_err(internal)?;
        Ok(rows.into_iter().filter(|d| p.can_read(d.project_id)).map(Domain).collect())
    }
}

/// A domain the caller may manage, or NOT_FOUND (also for one it may not see).
async fn managed_domain(ctx: &Context<'_>, hostname: &str) -> async_graphql::Result<domain::Model> {
    let p = principal(ctx)?;
    let host = parse_hostname(hostname).unwrap_or_default();
    let row = domain::Entity::find()
        .filter(domain::Column::Hostname.eq(host))
        .one(management(ctx).store.db())
        .await
        .map_err(internal)?
        .ok_or_else(|| coded(NOT_FOUND, format!("domain {hostname} not found")))?;
    super::query::may_read(p, row.project_id, || format!("domain {hostname} not found"))?;
    needs_manage(p, row.project_id)?;
    Ok(row)
}

fn domain_json(d: &domain::Model) -> serde_json::Value {
    json!({"hostname": d.hostname, "service_id": d.service_id, "verified_at": d.verified_at})
}

#[derive(Default)]
pub struct DomainMutation;

#[Object]
impl DomainMutation {
    /// Binds a hostname to a service. It routes once `verifyDomain` finds
    /// the returned TXT record in DNS.
    async fn add_domain(&self, ctx: &Context<'_>, input: AddDomainInput) -> async_graphql::Result<DomainPayload> {
        let p = principal(ctx)?;
        let project_row = readable_project(ctx, p, &input.project).await?;
        needs_manage(p, project_row.id)?;
        let hostname = match parse_hostname(&input.hostname) {
            Ok(h) => h,
            Err(message) => return Ok(DomainPayload::failed("input.hostname", "INVALID", message)),
        };
        let mgmt = management(ctx);
        let tx = mgmt.store.begin_write().await.map_err(internal)?;
        let Some(service_row) =
            greenthread_store::state::service_by_name(&tx, project_row.id, &input.service).await.map_err(internal)?
        else {
            return Ok(DomainPayload::failed(
                "input.service",
                "NOT_FOUND",
                format!("service {} not found", input.service),
            ));
        };
        let taken =
            domain::Entity::find().filter(domain::Column::Hostname.eq(&hostname)).one(&tx).await.map_err(internal)?;
        if taken.is_some() {
            return Ok(DomainPayload::failed("input.hostname", "TAKEN", "the hostname is already taken"));
        }
        let now = mgmt.store.now();
        let row = domain::ActiveModel {
            id: Set(Uuid::now_v7()),
            project_id: Set(project_row.id),
            service_id: Set(service_row.id),
            hostname: Set(hostname.clone()),
            token: Set(new_token()),
            verified_at: Set(None),
            created_at: Set(now),
        }
        .insert(&tx)
        .await
        .map_err(internal)?;
        let actor = p.actor("graphql");
        let event = audit::NewEvent {
            at: now,
            actor: &actor,
            project_id: Some(row.project_id),
            action: "domain.create".into(),
            object_type: "domain",
            object_id: Some(row.id),
            object_name: hostname,
            before: None,
            after: Some(domain_json(&row)),
        };
        audit::record(&tx, event).await.map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        sync(ctx).await;
        Ok(DomainPayload { domain: Some(Domain(row)), user_errors: vec![] })
    }

    /// Looks up the domain's TXT record; marks it verified when it holds the token.
    async fn verify_domain(&self, ctx: &Context<'_>, input: DomainInput) -> async_graphql::Result<DomainPayload> {
        let p = principal(ctx)?;
        let row = managed_domain(ctx, &input.hostname).await?;
        let mgmt = management(ctx);
        let name = challenge_name(&row.hostname);
        let records = match mgmt.resolver.txt(&name).await {
            Ok(r) => r,
            Err(e) => {
                return Ok(DomainPayload::failed("input.hostname", "DNS_ERROR", format!("looking up {name}: {e}")));
            }
        };
        if !records.iter().any(|r| r.trim() == row.token) {
            return Ok(DomainPayload::failed(
                "input.hostname",
                "NOT_VERIFIED",
                format!("{name} has {} TXT records, none with this domain's token", records.len()),
            ));
        }
        if row.verified_at.is_some() {
            return Ok(DomainPayload { domain: Some(Domain(row)), user_errors: vec![] });
        }
        let tx = mgmt.store.begin_write().await.map_err(internal)?;
        let before = domain_json(&row);
        let mut active = row.into_active_model();
        active.verified_at = Set(Some(mgmt.store.now()));
        let row = active.update(&tx).await.map_err(internal)?;
        let actor = p.actor("graphql");
        let event = audit::NewEvent {
            at: mgmt.store.now(),
            actor: &actor,
            project_id: Some(row.project_id),
            action: "domain.verify".into(),
            object_type: "domain",
            object_id: Some(row.id),
            object_name: row.hostname.clone(),
            before: Some(before),
            after: Some(domain_json(&row)),
        };
        audit::record(&tx, event).await.map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        sync(ctx).await;
        Ok(DomainPayload { domain: Some(Domain(row)), user_errors: vec![] })
    }

    async fn remove_domain(&self, ctx: &Context<'_>, input: DomainInput) -> async_graphql::Result<DeletePayload> {
        let p = principal(ctx)?;
        let row = managed_domain(ctx, &input.hostname).await?;
        let mgmt = management(ctx);
        let tx = mgmt.store.begin_write().await.map_err(internal)?;
        domain::Entity::delete_by_id(row.id).exec(&tx).await.map_err(internal)?;
        let actor = p.actor("graphql");
        let event = audit::NewEvent {
            at: mgmt.store.now(),
            actor: &actor,
            project_id: Some(row.project_id),
            action: "domain.delete".into(),
            object_type: "domain",
            object_id: Some(row.id),
            object_name: row.hostname.clone(),
            before: Some(domain_json(&row)),
            after: None,
        };
        audit::record(&tx, event).await.map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        sync(ctx).await;
        Ok(DeletePayload { deleted_id: Some(ID(row.id.to_string())), user_errors: vec![] })
    }
}

async fn sync(ctx: &Context<'_>) {
    if let Err(e) = management(ctx).registry.sync().await {
        tracing::warn!(error = %e, "Committed, but the routes could not be re-read yet");
    }
}
