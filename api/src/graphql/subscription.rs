//! Live model state: every lifecycle change of the caller's models.

use std::sync::Arc;

use async_graphql::{Context, Subscription};
use futures_util::Stream;
use tokio_stream::StreamExt;

use super::errors::{FORBIDDEN, coded, principal};
use super::query::readable_project;
use super::types::{ModelEvent, Scheduler, tier_of};
use crate::catalog::ModelCatalog;

pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// State changes (waking, serving, sleeping, and the tier) of the models
    /// the caller may read, optionally of one project.
    async fn model_events(
        &self,
        ctx: &Context<'_>,
        project: Option<String>,
    ) -> async_graphql::Result<std::pin::Pin<Box<dyn Stream<Item = ModelEvent> + Send>>> {
        let p = principal(ctx)?.clone();
        if !(p.is_admin()
            || p.has(greenthread_store::auth::Scope::Read)
            || p.has(greenthread_store::auth::Scope::Manage))
        {
            return Err(coded(FORBIDDEN, "this key has no read scope"));
        }
        let only = match &project {
            Some(name) => Some(readable_project(ctx, &p, name).await?.name),
            None => None,
        };
        let catalog = ctx.data_unchecked::<Arc<ModelCatalog>>().clone();
        let Some(scheduler) = &ctx.data_unchecked::<Scheduler>().0 else {
            return Ok(
                Box::pin(futures_util::stream::empty()) as std::pin::Pin<Box<dyn Stream<Item = ModelEvent> + Send>>
            );
        };
        let stream = scheduler.events().filter_map(move |event| {
            let entry = catalog.by_name(event.model.as_str())?;
            let project = entry.spec.project.to_string();
            let visible = if p.is_admin() { true } else { project == p.project.as_str() };
            if !visible || only.as_ref().is_some_and(|o| *o != project) {
                return None;
            }
            Some(ModelEvent {
                model: event.model.to_string(),
                project,
                node: event.node.to_string(),
                from: event.from.name().to_owned(),
                to: event.to.name().to_owned(),
                tier: tier_of(&event.to),
                cause: event.cause.as_str().to_owned(),
                after_ms: event.after.as_secs_f64() * 1000.0,
                at: chrono::Utc::now(),
            })
        });
        Ok(Box::pin(stream))
    }
}
