//! Operator actions on a model's runtime: wake it now, or put it to sleep
//! now. Neither changes the model's spec; both are recorded in the audit log.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use greenthread_core::ModelName;
use greenthread_scheduler::AcquireError;
use serde_json::json;

use super::errors::{UNAVAILABLE, coded, internal, principal};
use super::mutation::needs_manage;
use super::query::readable_model;
use super::types::{Model, Scheduler, management};
use crate::manage::UserError;
use crate::scheduler_link::SchedulerLink;
use greenthread_store::audit::{self, NewEvent};
use greenthread_store::auth::Principal;
use greenthread_store::entities::model;

#[derive(InputObject)]
pub struct ModelActionInput {
    pub name: String,
}

#[derive(SimpleObject)]
pub struct WakeModelPayload {
    /// The model, serving, with its wake in `runtime`.
    pub model: Option<Model>,
    pub user_errors: Vec<UserError>,
}

#[derive(SimpleObject)]
pub struct SleepModelPayload {
    pub model: Option<Model>,
    /// Replicas now going to sleep.
    pub sleeping_replicas: u32,
    /// Replicas with requests in flight, left awake: they sleep once idle
    /// for the model's idle timeout.
    pub busy_replicas: u32,
    pub user_errors: Vec<UserError>,
}

#[derive(Default)]
pub struct ModelActionMutation;

#[Object]
impl ModelActionMutation {
    /// Wakes the model now (as its first request would) and answers once it
    /// serves. It then sleeps after its idle timeout like any model.
    async fn wake_model(&self, ctx: &Context<'_>, input: ModelActionInput) -> async_graphql::Result<WakeModelPayload> {
        let (p, row, manager) = target(ctx, &input.name).await?;
        let name = spec_name(&row)?;
        if let Err(e) = manager.wake(&name).await {
            return Ok(WakeModelPayload { model: None, user_errors: vec![acquire_error(&e)] });
        }
        record(ctx, p, &row, "model.wake", json!({"state": "serving"})).await?;
        Ok(WakeModelPayload { model: Some(Model::from_row(row)?), user_errors: vec![] })
    }

    /// Puts the model's idle replicas to sleep now; the next request wakes
    /// it. A model kept awake by `minReplicas` is refused.
    async fn sleep_model(
        &self,
        ctx: &Context<'_>,
        input: ModelActionInput,
    ) -> async_graphql::Result<SleepModelPayload> {
        let (p, row, manager) = target(ctx, &input.name).await?;
        let name = spec_name(&row)?;
        let outcome = match manager.sleep(&name).await {
            Ok(o) => o,
            Err(e) => {
                return Ok(SleepModelPayload {
                    model: None,
                    sleeping_replicas: 0,
                    busy_replicas: 0,
                    user_errors: vec![acquire_error(&e)],
                });
            }
        };
        if outcome.kept_for_min > 0 && outcome.sleeping == 0 && outcome.busy == 0 {
            let message = "minReplicas keeps this model awake; lower it to 0 first";
            return Ok(SleepModelPayload {
                model: Some(Model::from_row(row)?),
                sleeping_replicas: 0,
                busy_replicas: 0,
                user_errors: vec![UserError::new("input.name", "MIN_REPLICAS", message)],
            });
        }
        let after = json!({"sleepingReplicas": outcome.sleeping, "busyReplicas": outcome.busy});
        record(ctx, p, &row, "model.sleep", after).await?;
        Ok(SleepModelPayload {
            model: Some(Model::from_row(row)?),
            sleeping_replicas: outcome.sleeping,
            busy_replicas: outcome.busy,
            user_errors: vec![],
        })
    }
}

/// The caller, the model it may manage, and the scheduler that runs it.
async fn target<'a>(
    ctx: &'a Context<'_>,
    name: &str,
) -> async_graphql::Result<(&'a Principal, model::Model, &'a SchedulerLink)> {
    let p = principal(ctx)?;
    let row = readable_model(ctx, p, name).await?;
    needs_manage(p, row.project_id)?;
    let manager = ctx
        .data_unchecked::<Scheduler>()
        .0
        .as_ref()
        .ok_or_else(|| coded(UNAVAILABLE, "this server runs no scheduler; ask the one that serves the model"))?;
    Ok((p, row, manager))
}

fn spec_name(row: &model::Model) -> async_graphql::Result<ModelName> {
    ModelName::parse(&row.name).map_err(internal)
}

fn acquire_error(e: &AcquireError) -> UserError {
    let code = match e {
        AcquireError::UnknownModel(_) => "NOT_SERVED",
        AcquireError::Timeout { .. } => "TIMEOUT",
        AcquireError::Failed { .. } => "FAILED",
        AcquireError::TooLarge { .. } => "TOO_LARGE",
        AcquireError::Stopped => "UNAVAILABLE",
    };
    UserError::new("input.name", code, e.to_string())
}

async fn record(
    ctx: &Context<'_>,
    p: &Principal,
    row: &model::Model,
    action: &str,
    after: serde_json::Value,
) -> async_graphql::Result<()> {
    let store = &management(ctx).store;
    let event = NewEvent {
        at: store.now(),
        actor: &p.actor("graphql"),
        project_id: Some(row.project_id),
        action: action.to_owned(),
        object_type: "model",
        object_id: Some(row.id),
        object_name: row.name.clone(),
        before: None,
        after: Some(after),
    };
    audit::record(store.db(), event).await.map_err(internal)
}
