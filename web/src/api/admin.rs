//! Projects with their services and domains, the scheduler's nodes, and the audit log.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{graphql, mutate};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRow {
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectRow {
    pub name: String,
    pub description: String,
    pub services: Vec<ServiceRow>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainRow {
    pub hostname: String,
    pub verified: bool,
    pub project: String,
    pub service: String,
}

/// Which model runs in which project and service.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    #[derive(Deserialize)]
    struct Nodes<T> {
        nodes: Vec<T>,
    }
    #[derive(Deserialize)]
    struct Named {
        name: String,
    }
    #[derive(Deserialize)]
    struct RawProject {
        name: String,
        description: String,
        services: Nodes<ServiceRow>,
    }
    #[derive(Deserialize)]
    struct RawModel {
        name: String,
        project: Named,
        service: Named,
    }
    #[derive(Deserialize)]
    struct RawDomain {
        hostname: String,
        verified: bool,
        project: Named,
        service: Named,
    }
    #[derive(Deserialize)]
    struct Data {
        projects: Nodes<RawProject>,
        models: Nodes<RawModel>,
        domains: Vec<RawDomain>,
    }
    let query =
        "{ projects(first: 50) { nodes { name description services(first: 50) { nodes { name description } } } }
                   models(first: 100) { nodes { name project { name } service { name } } }
                   domains { hostname verified project { name } service { name } } }";
    let data: Data = graphql(key, query, json!({})).await?;
    Ok(Projects {
        projects: data
            .projects
            .nodes
            .into_iter()
            .map(|p| ProjectRow { name: p.name, description: p.description, services: p.services.nodes })
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
            })
            .collect(),
    })
}

/// Creates a service in `project`.
pub async fn create_service(key: &str, project: &str, name: &str, description: &str) -> Result<(), String> {
    let query = "mutation($i: CreateServiceInput!) { createService(input: $i) { userErrors { field message } } }";
    let vars = json!({"i": {"project": project, "name": name, "description": description}});
    mutate(key, query, "createService", vars).await.map(drop)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TierRow {
    pub tier: String,
    pub budget_bytes: u64,
    pub used_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    pub id: String,
    pub device_budget_bytes: u64,
    pub device_used_bytes: u64,
    pub tiers: Vec<TierRow>,
}

/// The scheduler's nodes (admin keys only).
pub async fn nodes(key: &str) -> Result<Vec<NodeRow>, String> {
    #[derive(Deserialize)]
    struct Data {
        nodes: Vec<NodeRow>,
    }
    let query = "{ nodes { id deviceBudgetBytes deviceUsedBytes tiers { tier budgetBytes usedBytes } } }";
    Ok(graphql::<Data>(key, query, json!({})).await?.nodes)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
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
    fn to_json(&self) -> Value {
        let mut filter = serde_json::Map::new();
        for (field, value) in [("action", &self.action), ("objectType", &self.object_type), ("since", &self.since)] {
            if !value.trim().is_empty() {
                filter.insert(field.into(), Value::String(value.trim().to_owned()));
            }
        }
        Value::Object(filter)
    }
}

/// One page of audit events, newest first, and the cursor of the next page.
pub async fn audit(
    key: &str,
    filter: &AuditFilter,
    after: Option<String>,
) -> Result<(Vec<AuditRow>, Option<String>), String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct PageInfo {
        has_next_page: bool,
        end_cursor: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Connection {
        nodes: Vec<AuditRow>,
        page_info: PageInfo,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Data {
        audit_events: Connection,
    }
    let query = "query($f: AuditEventFilter, $after: String) { auditEvents(filter: $f, first: 25, after: $after) {
                   nodes { id at actor action objectType objectName via before after }
                   pageInfo { hasNextPage endCursor } } }";
    let data: Data = graphql(key, query, json!({"f": filter.to_json(), "after": after})).await?;
    let next = data.audit_events.page_info.end_cursor.filter(|_| data.audit_events.page_info.has_next_page);
    Ok((data.audit_events.nodes, next))
}
