//! GitOps through GraphQL: `plan` (no writes) and `apply` (one transaction,
//! guarded by the plan's etag, replayable by idempotency key).

use async_graphql::{Context, Json, Object};

use super::errors::{principal, split};
use super::types::{ApplyPayload, Change, PlanPayload, management};
use crate::config::Config;
use crate::manage::{Author, UserError};

#[derive(Default)]
pub struct GitopsMutation;

#[Object]
impl GitopsMutation {
    /// What applying `desired` would change, and the etag to apply it on.
    /// Writes nothing.
    async fn plan(&self, ctx: &Context<'_>, desired: Json<serde_json::Value>) -> async_graphql::Result<PlanPayload> {
        let p = principal(ctx)?;
        let doc = match Config::from_json(&desired.0) {
            Ok(c) => c.state,
            Err(message) => {
                return Ok(PlanPayload {
                    changes: vec![],
                    etag: None,
                    user_errors: vec![UserError::new("desired", "INVALID", message)],
                });
            }
        };
        match management(ctx).plan(Author::Key(p), &doc).await {
            Ok(o) => Ok(PlanPayload {
                changes: o.changes.iter().map(Change::from).collect(),
                etag: Some(o.etag),
                user_errors: vec![],
            }),
            Err(e) => Ok(PlanPayload { changes: vec![], etag: None, user_errors: split(e)? }),
        }
    }

    /// Applies `desired` in one transaction if the state still has
    /// `baseEtag` (else CONFLICT). Repeating a request with the same
    /// `idempotencyKey` returns the first result.
    async fn apply(
        &self,
        ctx: &Context<'_>,
        desired: Json<serde_json::Value>,
        base_etag: String,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<ApplyPayload> {
        let p = principal(ctx)?;
        let failed = |user_errors| ApplyPayload { applied: false, changes: vec![], etag: None, user_errors };
        if idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 128) {
            return Ok(failed(vec![UserError::new("idempotencyKey", "INVALID", "1 to 128 characters")]));
        }
        let doc = match Config::from_json(&desired.0) {
            Ok(c) => c.state,
            Err(message) => return Ok(failed(vec![UserError::new("desired", "INVALID", message)])),
        };
        let result = management(ctx)
            .apply(Author::Key(p), &p.actor("apply"), &doc, Some(&base_etag), idempotency_key.as_deref())
            .await;
        match result {
            Ok(o) => Ok(ApplyPayload {
                applied: true,
                changes: o.changes.iter().map(Change::from).collect(),
                etag: Some(o.etag),
                user_errors: vec![],
            }),
            Err(e) => Ok(failed(split(e)?)),
        }
    }
}
