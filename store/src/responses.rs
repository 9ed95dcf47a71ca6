//! Stored responses of the Responses API, each kept for one project until
//! it expires. A response is written once and read or deleted by id; a
//! single-row statement, so no write lock is taken (nothing is checked
//! before it). A response of another project is not found, exactly like one
//! that does not exist.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::Value;
use uuid::Uuid;

use crate::entities::stored_response;
use crate::{Store, StoreError, StoreResult};

/// A response to keep: whose it is, its conversation so far (input items,
/// earlier turns first) and the response object.
#[derive(Debug, Clone, PartialEq)]
pub struct NewResponse {
    pub id: String,
    pub project_id: Uuid,
    pub key_id: Option<Uuid>,
    pub model: String,
    pub input: Vec<Value>,
    pub body: Value,
}

/// A kept response, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub id: String,
    pub model: String,
    pub input: Vec<Value>,
    pub body: Value,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Keeps `response` for `retention`.
    ///
    /// # Errors
    /// When the database fails (an id used twice is a conflict).
    pub async fn save_response(&self, response: NewResponse, retention: Duration) -> StoreResult<()> {
        let now = self.now();
        let keep = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let row = stored_response::ActiveModel {
            id: Set(response.id),
            project_id: Set(response.project_id),
            key_id: Set(response.key_id),
            model: Set(response.model),
            input: Set(Value::Array(response.input).to_string()),
            body: Set(response.body.to_string()),
            created_at: Set(now),
            expires_at: Set(now.checked_add_signed(keep).unwrap_or(DateTime::<Utc>::MAX_UTC)),
        };
        stored_response::Entity::insert(row).exec(self.db()).await?;
        Ok(())
    }

    /// The unexpired response `id` of `project_id`.
    ///
    /// # Errors
    /// When the database fails or the row does not read back.
    pub async fn response(&self, project_id: Uuid, id: &str) -> StoreResult<Option<StoredResponse>> {
        let row = stored_response::Entity::find_by_id(id.to_owned())
            .filter(stored_response::Column::ProjectId.eq(project_id))
            .filter(stored_response::Column::ExpiresAt.gt(self.now()))
            .one(self.db())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("response {}: {e}", row.id));
        let input: Vec<Value> = serde_json::from_str(&row.input).map_err(corrupt)?;
        let body: Value = serde_json::from_str(&row.body).map_err(corrupt)?;
        Ok(Some(StoredResponse { id: row.id, model: row.model, input, body, created_at: row.created_at }))
    }

    /// Deletes response `id` of `project_id`; whether there was one.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn delete_response(&self, project_id: Uuid, id: &str) -> StoreResult<bool> {
        let deleted = stored_response::Entity::delete_many()
            .filter(stored_response::Column::Id.eq(id))
            .filter(stored_response::Column::ProjectId.eq(project_id))
            .exec(self.db())
            .await?;
        Ok(deleted.rows_affected > 0)
    }

    /// Deletes the responses that have expired; how many.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn prune_responses(&self) -> StoreResult<u64> {
        let deleted = stored_response::Entity::delete_many()
            .filter(stored_response::Column::ExpiresAt.lte(self.now()))
            .exec(self.db())
            .await?;
        Ok(deleted.rows_affected)
    }
}
