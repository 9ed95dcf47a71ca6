//! Live model state: every lifecycle change of the caller's models.

use std::sync::Arc;

use async_graphql::{Context, Subscription};
use futures_util::Stream;
use tokio_stream::StreamExt;

use super::errors::{FORBIDDEN, coded, principal};
use super::query::readable_project;
use super::types::{ModelEvent, Scheduler, WakeProgressInfo, tier_of};
use crate::catalog::ModelCatalog;
use crate::scheduler_link::SchedulerLink;
use greenthread_core::{ModelName, ModelState, NodeId, WakeProgress};
use greenthread_scheduler::TransitionEvent;

/// How often a subscriber hears how a wake goes, while one is under way.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What the subscription passes on: a state change, or a wake's progress.
enum Seen {
    Change(TransitionEvent),
    Progress { model: ModelName, node: NodeId, progress: WakeProgress },
}

/// The scheduler's state changes, and while any replica wakes, its
/// progress every second (read from the scheduler's status only then).
fn with_progress(scheduler: SchedulerLink) -> impl Stream<Item = Seen> + Send {
    // Subscribed now, not when first polled: no change in between is missed.
    let mut changes = scheduler.events();
    async_stream::stream! {
        // Wakes already under way when the subscriber came.
        let mut waking: std::collections::HashSet<(ModelName, NodeId)> = match scheduler.status().await {
            Ok(status) => status
                .models
                .into_iter()
                .flat_map(|m| m.replica_list.into_iter().filter(|r| r.wake_progress.is_some()).map(move |r| (m.name.clone(), r.node)))
                .collect(),
            Err(_) => std::collections::HashSet::new(),
        };
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                change = changes.next() => Some(change),
                _ = tick.tick(), if !waking.is_empty() => None,
            };
            match next {
                Some(None) => break,
                Some(Some(change)) => {
                    let key = (change.model.clone(), change.node.clone());
                    if matches!(change.to, ModelState::Waking { .. }) {
                        waking.insert(key);
                    } else {
                        waking.remove(&key);
                    }
                    yield Seen::Change(change);
                }
                None => {
                    let Ok(status) = scheduler.status().await else { continue };
                    for m in status.models {
                        for r in m.replica_list {
                            if let Some(progress) = r.wake_progress
                                && waking.contains(&(m.name.clone(), r.node.clone()))
                            {
                                yield Seen::Progress { model: m.name.clone(), node: r.node, progress };
                            }
                        }
                    }
                }
            }
        }
    }
}

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
        let changes = with_progress(scheduler.clone());
        let stream = changes.filter_map(move |seen| {
            let model = match &seen {
                Seen::Change(event) => &event.model,
                Seen::Progress { model, .. } => model,
            };
            let entry = catalog.by_name(model.as_str())?;
            let project = entry.spec.project.to_string();
            let visible = if p.is_admin() { true } else { project == p.project.as_str() };
            if !visible || only.as_ref().is_some_and(|o| *o != project) {
                return None;
            }
            Some(match seen {
                Seen::Change(event) => ModelEvent {
                    model: event.model.to_string(),
                    project,
                    node: event.node.to_string(),
                    from: event.from.name().to_owned(),
                    to: event.to.name().to_owned(),
                    tier: tier_of(&event.to),
                    cause: event.cause.as_str().to_owned(),
                    after_ms: event.after.as_secs_f64() * 1000.0,
                    at: chrono::Utc::now(),
                    progress: None,
                },
                Seen::Progress { model, node, progress } => ModelEvent {
                    model: model.to_string(),
                    project,
                    node: node.to_string(),
                    from: "waking".into(),
                    to: "waking".into(),
                    tier: Some(progress.from.to_string()),
                    cause: "progress".into(),
                    after_ms: progress.elapsed.as_secs_f64() * 1000.0,
                    at: chrono::Utc::now(),
                    progress: Some(WakeProgressInfo::of(model.as_str(), &progress)),
                },
            })
        });
        Ok(Box::pin(stream))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use greenthread_core::{
        ArtifactUri, ModelSpec, NodeControl, NodeFuture, StageReport, Tier, TierUsage, WakeReport, WarmTier,
    };
    use greenthread_scheduler::{ManagedModel, ManagerConfig, ModelManager, NoObserver, NodeHandle};

    use super::*;

    /// A node whose wakes take seconds (real time: this crate's tokio has no paused clock).
    struct SlowNode;

    impl NodeControl for SlowNode {
        fn stage<'a>(&'a self, _spec: &'a ModelSpec) -> NodeFuture<'a, StageReport> {
            Box::pin(async { Ok(StageReport { tier: Tier::Disk, device_bytes: 1 }) })
        }

        fn wake<'a>(&'a self, _model: &'a ModelName) -> NodeFuture<'a, WakeReport> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(2500)).await;
                Ok(WakeReport { from: Tier::Disk, duration: Duration::from_millis(2500), device_bytes: 1 })
            })
        }

        fn sleep<'a>(&'a self, _model: &'a ModelName, warm: WarmTier) -> NodeFuture<'a, Tier> {
            Box::pin(async move { Ok(warm.into()) })
        }

        fn forget<'a>(&'a self, _spec: &'a ModelSpec) -> NodeFuture<'a, ()> {
            Box::pin(async { Ok(()) })
        }

        fn tiers(&self) -> Vec<TierUsage> {
            Vec::new()
        }
    }

    #[tokio::test]
    async fn subscribers_hear_a_wakes_progress_every_second_until_it_serves() {
        let name = ModelName::parse("slow").unwrap_or_else(|e| panic!("{e}"));
        let spec = ModelSpec::new(name.clone(), ArtifactUri::File("/m/slow.gguf".into()));
        let node = NodeHandle {
            id: NodeId::parse("n1").unwrap_or_else(|e| panic!("{e}")),
            control: Arc::new(SlowNode),
            device_budget: 10,
            holdings: vec![],
        };
        let manager = ModelManager::start(
            vec![node],
            vec![ManagedModel { spec, device_bytes: 1 }],
            ManagerConfig { wake_timeout: Duration::from_secs(30), ..ManagerConfig::default() },
            Arc::new(NoObserver),
        );
        let mut seen = Box::pin(with_progress(SchedulerLink::Local(manager.clone())));
        let waker = tokio::spawn(async move { drop(manager.acquire(&name).await) });
        let mut progress = 0;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), seen.next()).await {
                Ok(Some(Seen::Progress { progress: p, .. })) => {
                    assert_eq!(p.from, Tier::Disk);
                    progress += 1;
                }
                Ok(Some(Seen::Change(change))) if change.to == ModelState::Serving => break,
                Ok(Some(Seen::Change(_))) => {}
                other => panic!("the stream ended or stalled: {}", other.is_ok()),
            }
        }
        assert!((1..=3).contains(&progress), "about one a second over a 2.5 s wake: {progress}");
        waker.await.unwrap_or_else(|e| panic!("{e}"));
    }
}
