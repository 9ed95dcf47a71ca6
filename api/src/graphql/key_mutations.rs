//! API key mutations: create (the secret shown once) and revoke.

use async_graphql::{Context, ID, InputObject, Object};
use chrono::{DateTime, Utc};
use sea_orm::EntityTrait;
use uuid::Uuid;

use super::errors::{FORBIDDEN, NOT_FOUND, coded, internal, principal};
use super::mutation::needs_manage;
use super::query::readable_project;
use super::types::{ApiKey, CreateApiKeyPayload, RevokeApiKeyPayload, management};
use crate::manage::UserError;
use greenthread_store::auth::{Scope, parse_scopes};
use greenthread_store::entities::api_key;
use greenthread_store::keys;

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
    /// Most requests in flight at once; past it, 429. Unlimited when left out.
    pub max_concurrent_requests: Option<u32>,
}

#[derive(InputObject)]
pub struct RevokeApiKeyInput {
    pub id: ID,
    /// A key to create in the same change, with the revoked key's project,
    /// scopes and limits: how a key is rotated, and the only way to revoke
    /// the last admin key.
    pub replacement: Option<ReplacementKeyInput>,
}

#[derive(InputObject)]
pub struct ReplacementKeyInput {
    pub name: String,
    pub expires_at: Option<DateTime<Utc>>,
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
        errors.extend(key_name_error("input.name", &name));
        let scopes = parse_scopes(&input.scopes)
            .map_err(|e| errors.push(UserError::new("input.scopes", "INVALID", e.to_string())))
            .ok();
        if scopes.as_ref().is_some_and(|s| s.contains(&Scope::Admin)) && !p.is_admin() {
            errors.push(UserError::new("input.scopes", "FORBIDDEN", "only an admin key may create admin keys"));
        }
        for (field, value) in [
            ("input.requestsPerMinute", input.requests_per_minute),
            ("input.tokensPerMinute", input.tokens_per_minute),
            ("input.maxConcurrentRequests", input.max_concurrent_requests),
        ] {
            if value.is_some_and(|v| v == 0 || v > i32::MAX as u32) {
                errors.push(UserError::new(field, "INVALID", "a limit is at least 1 (leave it out for none)"));
            }
        }
        errors.extend(expiry_error("input.expiresAt", input.expires_at, mgmt.store.now()));
        let Some(scopes) = scopes.filter(|_| errors.is_empty()) else {
            return Ok(CreateApiKeyPayload { api_key: None, secret: None, user_errors: errors });
        };
        let tx = mgmt.store.begin_write().await.map_err(internal)?;
        let created = mgmt
            .keys
            .create(
                &tx,
                greenthread_store::auth::KeyRequest {
                    project_id: project_row.id,
                    name,
                    scopes,
                    expires_at: input.expires_at,
                    limits: greenthread_store::ratelimit::KeyLimits {
                        requests_per_minute: input.requests_per_minute,
                        tokens_per_minute: input.tokens_per_minute,
                        max_concurrent_requests: input.max_concurrent_requests,
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

    /// Revokes a key: refused from its next request on (and any websocket
    /// it opened closes). Only admin keys revoke admin keys, and the last
    /// live admin key is revoked only with a `replacement`.
    async fn revoke_api_key(
        &self,
        ctx: &Context<'_>,
        input: RevokeApiKeyInput,
    ) -> async_graphql::Result<RevokeApiKeyPayload> {
        let p = principal(ctx)?;
        let Ok(id) = Uuid::parse_str(input.id.as_str()) else {
            return Ok(RevokeApiKeyPayload::failed(vec![UserError::new("input.id", "INVALID", "not an API key id")]));
        };
        let mgmt = management(ctx);
        let row = api_key::Entity::find_by_id(id)
            .one(mgmt.store.db())
            .await
            .map_err(internal)?
            .ok_or_else(|| coded(NOT_FOUND, format!("API key {id} not found")))?;
        super::query::may_read(p, row.project_id, || format!("API key {id} not found"))?;
        needs_manage(p, row.project_id)?;
        let scopes = parse_scopes(&row.scopes.split(' ').collect::<Vec<_>>()).map_err(internal)?;
        let admin_key = scopes.contains(&Scope::Admin);
        if admin_key && !p.is_admin() {
            return Err(coded(FORBIDDEN, "only an admin key may revoke an admin key"));
        }
        if let Some(r) = &input.replacement
            && let Some(error) = key_name_error("input.replacement.name", &r.name)
                .or_else(|| expiry_error("input.replacement.expiresAt", r.expires_at, mgmt.store.now()))
        {
            return Ok(RevokeApiKeyPayload::failed(vec![error]));
        }
        let now = mgmt.store.now();
        let tx = mgmt.store.begin_write().await.map_err(internal)?;
        // Under the write lock: two revocations cannot both see the other's key live.
        if admin_key && input.replacement.is_none() && keys::live_admin_keys(&tx, now).await.map_err(internal)? <= 1 {
            return Ok(RevokeApiKeyPayload::failed(vec![UserError::new(
                "input.replacement",
                "LAST_ADMIN_KEY",
                "this is the last live admin key: revoke it with a replacement, or create another admin key first",
            )]));
        }
        let actor = p.actor("graphql");
        let revoked = match keys::revoke(&tx, id, &actor, now).await {
            Ok(row) => row,
            Err(greenthread_store::StoreError::Conflict(m)) => {
                return Ok(RevokeApiKeyPayload::failed(vec![UserError::new("input.id", "ALREADY_REVOKED", m)]));
            }
            Err(e) => return Err(internal(e)),
        };
        let replacement = match input.replacement {
            Some(r) => {
                let request = greenthread_store::auth::KeyRequest {
                    project_id: revoked.project_id,
                    name: r.name.trim().to_owned(),
                    scopes,
                    expires_at: r.expires_at,
                    limits: greenthread_store::ratelimit::KeyLimits {
                        requests_per_minute: revoked.requests_per_minute.and_then(|n| u32::try_from(n).ok()),
                        tokens_per_minute: revoked.tokens_per_minute.and_then(|n| u32::try_from(n).ok()),
                        max_concurrent_requests: revoked.max_concurrent_requests.and_then(|n| u32::try_from(n).ok()),
                    },
                };
                let created = mgmt.keys.create(&tx, request, &actor).await.map_err(internal)?;
                Some(CreateApiKeyPayload {
                    api_key: Some(ApiKey(created.row)),
                    secret: Some(created.secret),
                    user_errors: vec![],
                })
            }
            None => None,
        };
        tx.commit().await.map_err(internal)?;
        mgmt.keys.forget(id);
        Ok(RevokeApiKeyPayload { api_key: Some(ApiKey(revoked)), replacement, user_errors: vec![] })
    }
}

/// A key's name: 1 to 128 characters, no NUL.
fn key_name_error(field: &str, name: &str) -> Option<UserError> {
    let name = name.trim();
    (name.is_empty() || name.chars().count() > 128 || name.contains('\0'))
        .then(|| UserError::new(field, "INVALID", "a key's name has 1 to 128 characters, none of them NUL"))
}

fn expiry_error(field: &str, expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<UserError> {
    expires_at.is_some_and(|t| t <= now).then(|| UserError::new(field, "INVALID", "the expiry must be in the future"))
}
