//! API key rows. The secret itself never reaches the database: only its
//! SHA-256 and a short hint to recognise it by.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder,
};
use serde_json::json;
use uuid::Uuid;

use super::entities::{api_key, project};
use super::{Actor, StoreError, StoreResult, audit};

/// A key to store.
pub struct NewKey {
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    pub secret_hash: String,
    pub secret_hint: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub limits: crate::ratelimit::KeyLimits,
}

fn key_json(k: &api_key::Model) -> serde_json::Value {
    json!({
        "name": k.name, "scopes": k.scopes, "hint": k.secret_hint,
        "expires_at": k.expires_at, "revoked_at": k.revoked_at,
        "requests_per_minute": k.requests_per_minute, "tokens_per_minute": k.tokens_per_minute,
        "max_concurrent_requests": k.max_concurrent_requests,
    })
}

/// Stores a key with its audit event.
///
/// # Errors
/// When the database fails.
pub async fn insert(
    conn: &impl ConnectionTrait,
    key: NewKey,
    actor: &Actor,
    now: DateTime<Utc>,
) -> StoreResult<api_key::Model> {
    let row = api_key::ActiveModel {
        id: Set(key.id),
        project_id: Set(key.project_id),
        name: Set(key.name),
        scopes: Set(key.scopes.join(" ")),
        secret_hash: Set(key.secret_hash),
        secret_hint: Set(key.secret_hint),
        created_by: Set(actor.key_id),
        created_at: Set(now),
        expires_at: Set(key.expires_at),
        revoked_at: Set(None),
        last_used_at: Set(None),
        requests_per_minute: Set(key.limits.requests_per_minute.map(|n| i32::try_from(n).unwrap_or(i32::MAX))),
        tokens_per_minute: Set(key.limits.tokens_per_minute.map(|n| i32::try_from(n).unwrap_or(i32::MAX))),
        max_concurrent_requests: Set(key.limits.max_concurrent_requests.map(|n| i32::try_from(n).unwrap_or(i32::MAX))),
    }
    .insert(conn)
    .await?;
    audit::record(
        conn,
        audit::NewEvent {
            at: now,
            actor,
            project_id: Some(row.project_id),
            action: "api_key.create".into(),
            object_type: "api_key",
            object_id: Some(row.id),
            object_name: row.name.clone(),
            before: None,
            after: Some(key_json(&row)),
        },
    )
    .await?;
    Ok(row)
}

/// Marks a key revoked (it stays listed, refused from now on), with its audit event.
///
/// # Errors
/// [`StoreError::NotFound`] for an unknown key; [`StoreError::Conflict`] for one already revoked.
pub async fn revoke(
    conn: &impl ConnectionTrait,
    id: Uuid,
    actor: &Actor,
    now: DateTime<Utc>,
) -> StoreResult<api_key::Model> {
    let row = api_key::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("API key {id}")))?;
    if row.revoked_at.is_some() {
        return Err(StoreError::Conflict(format!("API key {id} is already revoked")));
    }
    let before = key_json(&row);
    let mut active = row.into_active_model();
    active.revoked_at = Set(Some(now));
    let row = active.update(conn).await?;
    audit::record(
        conn,
        audit::NewEvent {
            at: now,
            actor,
            project_id: Some(row.project_id),
            action: "api_key.revoke".into(),
            object_type: "api_key",
            object_id: Some(row.id),
            object_name: row.name.clone(),
            before: Some(before),
            after: Some(key_json(&row)),
        },
    )
    .await?;
    Ok(row)
}

/// Deletes every key of a project (when the project goes), each with its audit event.
///
/// # Errors
/// When the database fails.
pub async fn delete_for_project(
    conn: &impl ConnectionTrait,
    project_id: Uuid,
    actor: &Actor,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for row in api_key::Entity::find().filter(api_key::Column::ProjectId.eq(project_id)).all(conn).await? {
        api_key::Entity::delete_by_id(row.id).exec(conn).await?;
        audit::record(
            conn,
            audit::NewEvent {
                at: now,
                actor,
                project_id: Some(project_id),
                action: "api_key.delete".into(),
                object_type: "api_key",
                object_id: Some(row.id),
                object_name: row.name.clone(),
                before: Some(key_json(&row)),
                after: None,
            },
        )
        .await?;
    }
    Ok(())
}

/// The key whose secret hashes to `hash`.
///
/// # Errors
/// When the database fails.
pub async fn by_hash(conn: &impl ConnectionTrait, hash: &str) -> StoreResult<Option<api_key::Model>> {
    Ok(api_key::Entity::find().filter(api_key::Column::SecretHash.eq(hash)).one(conn).await?)
}

/// The key whose secret hashes to `hash`, with its project: one query, as
/// it runs on every request.
///
/// # Errors
/// When the database fails.
pub async fn with_project_by_hash(
    conn: &impl ConnectionTrait,
    hash: &str,
) -> StoreResult<Option<(api_key::Model, project::Model)>> {
    use sea_orm::{JoinType, QuerySelect};
    let to_project =
        api_key::Entity::belongs_to(project::Entity).from(api_key::Column::ProjectId).to(project::Column::Id).into();
    let found = api_key::Entity::find()
        .filter(api_key::Column::SecretHash.eq(hash))
        .join(JoinType::InnerJoin, to_project)
        .select_also(project::Entity)
        .one(conn)
        .await?;
    Ok(found.and_then(|(key, project)| project.map(|p| (key, p))))
}

/// Keys of the given projects (every project's for `None`), oldest first.
///
/// # Errors
/// When the database fails.
pub async fn list(conn: &impl ConnectionTrait, projects: Option<Vec<Uuid>>) -> StoreResult<Vec<api_key::Model>> {
    let mut q = api_key::Entity::find();
    if let Some(p) = projects {
        q = q.filter(api_key::Column::ProjectId.is_in(p));
    }
    Ok(q.order_by_asc(api_key::Column::Id).all(conn).await?)
}

/// Whether any key that may call models is live: open mode ends with the first.
///
/// # Errors
/// When the database fails.
pub async fn any_live_inference_key(conn: &impl ConnectionTrait) -> StoreResult<bool> {
    // Scopes are space-separated words; `inference` is the only one containing its letters.
    let found = api_key::Entity::find()
        .filter(api_key::Column::RevokedAt.is_null())
        .filter(api_key::Column::Scopes.contains("inference"))
        .one(conn)
        .await?;
    Ok(found.is_some())
}

/// How many admin keys are live at `now`: not revoked, not expired.
///
/// # Errors
/// When the database fails.
pub async fn live_admin_keys(conn: &impl ConnectionTrait, now: DateTime<Utc>) -> StoreResult<usize> {
    let live = api_key::Entity::find().filter(api_key::Column::RevokedAt.is_null()).all(conn).await?;
    Ok(live
        .iter()
        .filter(|k| k.expires_at.is_none_or(|t| t > now) && k.scopes.split(' ').any(|s| s == "admin"))
        .count())
}

/// Records that a key was used (callers throttle this).
///
/// # Errors
/// When the database fails.
pub async fn touch(conn: &impl ConnectionTrait, id: Uuid, now: DateTime<Utc>) -> StoreResult<()> {
    api_key::Entity::update_many()
        .col_expr(api_key::Column::LastUsedAt, sea_orm::sea_query::Expr::value(now))
        .filter(api_key::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}
