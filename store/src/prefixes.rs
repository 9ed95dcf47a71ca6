//! Which object-store prefixes each project's models may read from. A
//! `manage` key may point a model at an object-storage URI, which the nodes
//! then read with the server's own credentials: without a bound, a tenant
//! could read any bucket those credentials reach. So only an admin key may
//! name an object outside the prefixes an admin allowed for the project
//! (none, until one is set). Kept as one setting per project.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde_json::json;
use uuid::Uuid;

use super::entities::setting;
use super::{Actor, StoreError, StoreResult, audit};

/// Settings rows holding a project's prefixes are named this, then its id.
const SETTING_PREFIX: &str = "artifact-prefixes:";

fn setting_name(project: Uuid) -> String {
    format!("{SETTING_PREFIX}{project}")
}

fn parse(raw: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(format!("artifact prefixes: {e}")))
}

/// The prefixes allowed for `project`.
///
/// # Errors
/// When the database fails or the stored value is unreadable.
pub async fn of_project(conn: &impl ConnectionTrait, project: Uuid) -> StoreResult<Vec<String>> {
    match setting::Entity::find_by_id(setting_name(project)).one(conn).await? {
        Some(row) => parse(&row.value),
        None => Ok(Vec::new()),
    }
}

/// Every project's prefixes, by project id.
///
/// # Errors
/// When the database fails or a stored value is unreadable.
pub async fn all(conn: &impl ConnectionTrait) -> StoreResult<Vec<(Uuid, Vec<String>)>> {
    let rows = setting::Entity::find().filter(setting::Column::Name.starts_with(SETTING_PREFIX)).all(conn).await?;
    rows.iter()
        .filter_map(|row| {
            let id = Uuid::parse_str(row.name.strip_prefix(SETTING_PREFIX)?).ok()?;
            Some(parse(&row.value).map(|p| (id, p)))
        })
        .collect()
}

/// Replaces `project`'s prefixes (already validated), with an audit event.
///
/// # Errors
/// When the database fails.
pub async fn set(
    conn: &impl ConnectionTrait,
    project: Uuid,
    project_name: &str,
    prefixes: &[String],
    actor: &Actor,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let before = of_project(conn, project).await?;
    let value = serde_json::to_string(prefixes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let row = setting::ActiveModel { name: Set(setting_name(project)), value: Set(value) };
    match setting::Entity::find_by_id(setting_name(project)).one(conn).await? {
        Some(_) => row.update(conn).await?,
        None => row.insert(conn).await?,
    };
    audit::record(
        conn,
        audit::NewEvent {
            at: now,
            actor,
            project_id: Some(project),
            action: "project.artifact_prefixes".into(),
            object_type: "project",
            object_id: Some(project),
            object_name: project_name.to_owned(),
            before: Some(json!({"artifactPrefixes": before})),
            after: Some(json!({"artifactPrefixes": prefixes})),
        },
    )
    .await
}

/// Forgets a deleted project's prefixes.
///
/// # Errors
/// When the database fails.
pub async fn remove(conn: &impl ConnectionTrait, project: Uuid) -> StoreResult<()> {
    setting::Entity::delete_by_id(setting_name(project)).exec(conn).await?;
    Ok(())
}
