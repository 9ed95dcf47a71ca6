//! Projects with their services and domains, the scheduler's nodes, and the audit log.

use serde_json::Value;

use super::operations as op;
use super::{call, count, refused};

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRow {
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProjectRow {
    pub name: String,
    pub description: String,
    pub services: Vec<ServiceRow>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DomainRow {
    pub hostname: String,
    pub verified: bool,
    pub project: String,
    pub service: String,
    /// The TXT record that proves it: its name and value.
    pub record_name: String,
    pub record_value: String,
}

/// Which model runs in which project and service.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub model: String,
    pub project: String,
    pub service: String,
}

/// Everything the projects page shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Projects {
    pub projects: Vec<ProjectRow>,
    pub models: Vec<Placement>,
    pub domains: Vec<DomainRow>,
}

/// The projects the key may read, their services, models and domains.
pub async fn projects(key: &str) -> Result<Projects, String> {
    let data = call::<op::Projects>(key, op::projects::Variables).await?;
    Ok(Projects {
        projects: data
            .projects
            .nodes
            .into_iter()
            .map(|p| ProjectRow {
                name: p.name,
                description: p.description,
                services: p
                    .services
                    .nodes
                    .into_iter()
                    .map(|s| ServiceRow { name: s.name, description: s.description })
                    .collect(),
            })
            .collect(),
        models: data
            .models
            .nodes
            .into_iter()
            .map(|m| Placement { model: m.name, project: m.project.name, service: m.service.name })
            .collect(),
        domains: data
            .domains
            .into_iter()
            .map(|d| DomainRow {
                hostname: d.hostname,
                verified: d.verified,
                project: d.project.name,
                service: d.service.name,
                record_name: d.verification_record.name,
                record_value: d.verification_record.value,
            })
            .collect(),
    })
}

/// Creates a project (admin keys), with its `default` service.
pub async fn create_project(key: &str, name: &str, description: &str) -> Result<(), String> {
    let i = op::create_project::CreateProjectInput {
        name: name.to_owned(),
        description: Some(description.to_owned()).filter(|d| !d.is_empty()),
    };
    refused!(call::<op::CreateProject>(key, op::create_project::Variables { i }).await?.create_project.user_errors)
}

/// Deletes a project and everything in it.
pub async fn delete_project(key: &str, name: &str) -> Result<(), String> {
    let i = op::delete_project::DeleteProjectInput { name: name.to_owned() };
    refused!(call::<op::DeleteProject>(key, op::delete_project::Variables { i }).await?.delete_project.user_errors)
}

/// Deletes an empty service of `project`.
pub async fn delete_service(key: &str, project: &str, name: &str) -> Result<(), String> {
    let i = op::delete_service::DeleteServiceInput { project: project.to_owned(), name: name.to_owned() };
    refused!(call::<op::DeleteService>(key, op::delete_service::Variables { i }).await?.delete_service.user_errors)
}

/// Creates a service in `project`.
pub async fn create_service(key: &str, project: &str, name: &str, description: &str) -> Result<(), String> {
    let i = op::create_service::CreateServiceInput {
        project: project.to_owned(),
        name: name.to_owned(),
        description: Some(description.to_owned()),
    };
    refused!(call::<op::CreateService>(key, op::create_service::Variables { i }).await?.create_service.user_errors)
}

/// Binds `hostname` to a service; it routes once verified.
pub async fn add_domain(key: &str, project: &str, service: &str, hostname: &str) -> Result<(), String> {
    let i = op::add_domain::AddDomainInput {
        project: project.to_owned(),
        service: service.to_owned(),
        hostname: hostname.to_owned(),
    };
    refused!(call::<op::AddDomain>(key, op::add_domain::Variables { i }).await?.add_domain.user_errors)
}

/// Looks up the domain's TXT record; whether it is verified now.
pub async fn verify_domain(key: &str, hostname: &str) -> Result<bool, String> {
    let i = op::verify_domain::DomainInput { hostname: hostname.to_owned() };
    let payload = call::<op::VerifyDomain>(key, op::verify_domain::Variables { i }).await?.verify_domain;
    refused!(payload.user_errors)?;
    Ok(payload.domain.is_some_and(|d| d.verified))
}

pub async fn remove_domain(key: &str, hostname: &str) -> Result<(), String> {
    let i = op::remove_domain::DomainInput { hostname: hostname.to_owned() };
    refused!(call::<op::RemoveDomain>(key, op::remove_domain::Variables { i }).await?.remove_domain.user_errors)
}

#[derive(Debug, Clone, PartialEq)]
pub struct TierRow {
    pub tier: String,
    pub budget_bytes: u64,
    pub used_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeRow {
    pub id: String,
    pub device_budget_bytes: u64,
    pub device_used_bytes: u64,
    pub tiers: Vec<TierRow>,
}

/// The scheduler's nodes (admin keys only).
pub async fn nodes(key: &str) -> Result<Vec<NodeRow>, String> {
    let data = call::<op::Nodes>(key, op::nodes::Variables).await?;
    Ok(data
        .nodes
        .into_iter()
        .map(|n| NodeRow {
            id: n.id,
            device_budget_bytes: count(n.device_budget_bytes),
            device_used_bytes: count(n.device_used_bytes),
            tiers: n
                .tiers
                .into_iter()
                .map(|t| TierRow { tier: t.tier, budget_bytes: count(t.budget_bytes), used_bytes: count(t.used_bytes) })
                .collect(),
        })
        .collect())
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub id: String,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub object_type: String,
    pub object_name: Option<String>,
    pub via: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// What the audit page filters by; empty fields filter nothing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditFilter {
    pub action: String,
    pub object_type: String,
    /// RFC 3339, or empty.
    pub since: String,
}

impl AuditFilter {
    fn to_input(&self) -> op::audit_events::AuditEventFilter {
        let given = |value: &str| Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        op::audit_events::AuditEventFilter {
            action: given(&self.action),
            object_type: given(&self.object_type),
            since: given(&self.since),
            ..Default::default()
        }
    }
}

/// One page of audit events, newest first, and the cursor of the next page.
pub async fn audit(
    key: &str,
    filter: &AuditFilter,
    after: Option<String>,
) -> Result<(Vec<AuditRow>, Option<String>), String> {
    let variables = op::audit_events::Variables { f: Some(filter.to_input()), after };
    let page = call::<op::AuditEvents>(key, variables).await?.audit_events;
    let next = page.page_info.end_cursor.filter(|_| page.page_info.has_next_page);
    let rows = page
        .nodes
        .into_iter()
        .map(|e| AuditRow {
            id: e.id,
            at: e.at,
            actor: e.actor,
            action: e.action,
            object_type: e.object_type,
            object_name: e.object_name,
            via: e.via,
            before: e.before,
            after: e.after,
        })
        .collect();
    Ok((rows, next))
}
