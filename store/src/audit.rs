//! The audit log: one event per change, written in the change's own
//! transaction, with secrets taken out of what it records.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::Value;
use uuid::Uuid;

use super::entities::audit_event;
use super::{Actor, StoreResult};

/// What to record.
pub struct NewEvent<'a> {
    pub at: DateTime<Utc>,
    pub actor: &'a Actor,
    pub project_id: Option<Uuid>,
    /// `model.create`, `api_key.revoke`, …
    pub action: String,
    pub object_type: &'static str,
    pub object_id: Option<Uuid>,
    pub object_name: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Field names whose values are never recorded.
const SECRET_WORDS: [&str; 6] = ["secret", "token", "password", "credential", "hash", "private"];

/// `value` with every secret-looking field replaced, and credentials taken
/// out of URIs (`s3://bucket/m.gguf?access_key=…`, `https://user:pass@…`).
pub fn redact(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    if SECRET_WORDS.iter().any(|w| lower.contains(w)) && !v.is_null() {
                        (k, Value::String("[redacted]".into()))
                    } else {
                        (k, redact(v))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        Value::String(s) => Value::String(redact_uri(&s)),
        other => other,
    }
}

fn redact_uri(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else { return s.to_owned() };
    let rest = match rest.split_once('?') {
        Some((path, _)) => format!("{path}?[redacted]"),
        None => rest.to_owned(),
    };
    let rest = match rest.split_once('@') {
        Some((userinfo, host)) if !userinfo.contains('/') => format!("[redacted]@{host}"),
        _ => rest,
    };
    format!("{scheme}://{rest}")
}

/// Writes one event.
///
/// # Errors
/// When the database fails; the caller's transaction then rolls back with it.
pub async fn record(conn: &impl ConnectionTrait, event: NewEvent<'_>) -> StoreResult<()> {
    audit_event::ActiveModel {
        id: Set(Uuid::now_v7()),
        at: Set(event.at),
        actor_key_id: Set(event.actor.key_id),
        actor: Set(event.actor.name.clone()),
        project_id: Set(event.project_id),
        action: Set(event.action),
        object_type: Set(event.object_type.to_owned()),
        object_id: Set(event.object_id),
        object_name: Set(Some(event.object_name)),
        before: Set(event.before.map(redact)),
        after: Set(event.after.map(redact)),
        via: Set(event.actor.via.to_owned()),
    }
    .insert(conn)
    .await?;
    Ok(())
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only these projects' events; `None`: every project's (an admin's view).
    pub projects: Option<Vec<Uuid>>,
    pub action: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<Uuid>,
    pub actor_key_id: Option<Uuid>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// Events newest first, after the cursor `before_id`, at most `limit`.
///
/// # Errors
/// When the database fails.
pub async fn list(
    conn: &impl ConnectionTrait,
    filter: &AuditFilter,
    before_id: Option<Uuid>,
    limit: u64,
) -> StoreResult<Vec<audit_event::Model>> {
    use audit_event::Column as C;
    let mut q = audit_event::Entity::find();
    if let Some(projects) = &filter.projects {
        q = q.filter(C::ProjectId.is_in(projects.clone()));
    }
    if let Some(a) = &filter.action {
        q = q.filter(C::Action.eq(a.clone()));
    }
    if let Some(t) = &filter.object_type {
        q = q.filter(C::ObjectType.eq(t.clone()));
    }
    if let Some(id) = filter.object_id {
        q = q.filter(C::ObjectId.eq(id));
    }
    if let Some(id) = filter.actor_key_id {
        q = q.filter(C::ActorKeyId.eq(id));
    }
    if let Some(t) = filter.since {
        q = q.filter(C::At.gte(t));
    }
    if let Some(t) = filter.until {
        q = q.filter(C::At.lt(t));
    }
    // Ids are UUIDv7: ordered by creation time.
    if let Some(id) = before_id {
        q = q.filter(C::Id.lt(id));
    }
    Ok(q.order_by_desc(C::Id).limit(limit).all(conn).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_uri_credentials_are_redacted() {
        let v = serde_json::json!({
            "name": "k", "secret_hash": "abc", "artifact": "s3://b/m.gguf?access_key=AK&secret=SK",
            "nested": {"api_token": "t"}, "url": "https://user:pw@host/x", "plain": "file:///m/a.gguf",
        });
        let r = redact(v);
        assert_eq!(r["secret_hash"], "[redacted]");
        assert_eq!(r["nested"]["api_token"], "[redacted]");
        assert_eq!(r["artifact"], "s3://b/m.gguf?[redacted]");
        assert_eq!(r["url"], "https://[redacted]@host/x");
        assert_eq!(r["plain"], "file:///m/a.gguf");
        assert_eq!(r["name"], "k");
    }
}
