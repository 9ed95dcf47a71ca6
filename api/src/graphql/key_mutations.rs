//! API key mutations: create (the secret shown once) and revoke.

use async_graphql::{Context, ID, InputObject, Object};
use chrono::{DateTime, Utc};
use sea_orm::EntityTrait;
use uuid::Uuid;

use super::errors::{NOT_FOUND, coded, internal, principal};
use super::mutation::needs_manage;
use super::query::readable_project;
use super::types::{ApiKey, ApiKeyPayload, CreateApiKeyPayload, management};
use crate::auth::{Scope, parse_scopes};
use crate::manage::UserError;
use crate::store::entities::api_key;
use crate::store::keys;

#[derive(InputObject)]
pub struct CreateApiKeyInput {
    pub project: String,
    pub name: String,
    /// `inference`, `read`, `manage`, `admin`.
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Most `/v1` requests a minute; unlimited when left out.
    pub requests_per_minute: Option<u32>,
    /// Most tokens (input and output) a minute; unlimited when left out.
    pub tokens_per_minute: Option<u32>,
}

#[derive(InputObject)]
pub struct RevokeApiKeyInput {
    pub id: ID,
}

#[derive(Default)]
pub struct KeyMutation;

#[Object]
impl KeyMutation {
    /// Creates an API key. Its secret is in this answer only.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> async_graphql::Result<CreateApiKeyPayload> {
        let p = principal(ctx)?;
        let project_row = readable_project(ctx, p, &input.project).await?;
        needs_manage(p, project_row.id)?;
        let mgmt = management(ctx);
        let mut errors = Vec::new();
        let name = input.name.trim().to_owned();
        if name.is_empty() || name.len() > 128 {
            errors.push(UserError::new("input.name", "INVALID", "a key's name has 1 to 128 characters"));
        }
        let scopes = parse_scopes(&input.scopes)
            .map_err(|e| errors.push(UserError::new("input.scopes", "INVALID", e.to_string())))
            .ok();
        if scopes.as_ref().is_some_and(|s| s.contains(&Scope::Admin)) && !p.is_admin() {
            errors.push(UserError::new("input.scopes", "FORBIDDEN", "only an admin key may create admin keys"));
        }
        for (field, value) in
            [("input.requestsPerMinute", input.requests_per_minute), ("input.tokensPerMinute", input.tokens_per_minute)]
        {
            if value.is_some_and(|v| v == 0 || v > i32::MAX as u32) {
                errors.push(UserError::new(field, "INVALID", "a limit is at least 1 (leave it out for none)"));
            }
        }
        if input.expires_at.is_some_and(|t| t <= mgmt.store.now()) {
            errors.push(UserError::new("input.expiresAt", "INVALID", "the expiry must be in the future"));
        }
        let Some(scopes) = scopes.filter(|_| errors.is_empty()) else {
            return Ok(CreateApiKeyPayload { api_key: None, secret: None, user_errors: errors });
        };
        let tx = mgmt.store.begin_write().await.map_err(internal)?;
        let created = mgmt
            .keys
            .create(
                &tx,
                crate::auth::KeyRequest {
                    project_id: project_row.id,
                    name,
                    scopes,
                    expires_at: input.expires_at,
                    limits: crate::ratelimit::KeyLimits {
                        requests_per_minute: input.requests_per_minute,
                        tokens_per_minute: input.tokens_per_minute,
                    },
                },
                &p.actor("graphql"),
            )
            .await
            .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        Ok(CreateApiKeyPayload {
            api_key: Some(ApiKey(created.row)),
            secret: Some(created.secret),
            user_errors: vec![],
        })
    }

    /// Revokes a key: refused from its next request on.
    async fn revoke_api_key(
        &self,
        ctx: &Context<'_>,
        input: RevokeApiKeyInput,
    ) -> async_graphql::Result<ApiKeyPayload> {
        let p = principal(ctx)?;
        let Ok(id) = Uuid::parse_str(input.id.as_str()) else {
            return Ok(ApiKeyPayload::failed(vec![UserError::new("input.id", "INVALID", "not an API key id")]));
        };
        let mgmt = management(ctx);
        let row = api_key::Entity::find_by_id(id)
            .one(mgmt.store.db())
            .await
            .map_err(internal)?
            .filter(|k| p.can_read(k.project_id))
            .ok_or_else(|| coded(NOT_FOUND, format!("API key {id} not found")))?;
        needs_manage(p, row.project_id)?;
        let tx = mgmt.store.begin_write().await.map_err(internal)?;
        match keys::revoke(&tx, id, &p.actor("graphql"), mgmt.store.now()).await {
            Ok(row) => {
                tx.commit().await.map_err(internal)?;
                mgmt.keys.forget(id);
                Ok(ApiKeyPayload { api_key: Some(ApiKey(row)), user_errors: vec![] })
            }
            Err(crate::store::StoreError::Conflict(m)) => {
                Ok(ApiKeyPayload::failed(vec![UserError::new("input.id", "ALREADY_REVOKED", m)]))
            }
            Err(e) => Err(internal(e)),
        }
    }
}
