//! The operator's reconciler: one `Model` resource against the database.
//!
//! Each pass converts the resource, decides with [`super::sync::flow`]
//! which way a change goes, writes it (to the database through
//! [`ModelStore`], or back into the resource), and writes `status`: the
//! scheduler's view of the model and the `Synced` and `Ready` conditions.
//! A finalizer keeps a deleted resource until the model has left the
//! database (requests in flight finish, waiting ones fail).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use greenthread_core::desired::ModelDecl;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalized, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::convert::{FieldError, from_decl, to_decl};
use super::crd::{Condition, FINALIZER, MANAGER, ModelResource, ModelResourceStatus};
use super::sync::{Flow, Seen, digest, flow};

/// How often a settled Model is looked at again in production ([`Context::refresh`]).
pub const REFRESH: Duration = Duration::from_secs(30);

/// A boxed future, so the store stays object safe.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why the database refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The declaration breaks a rule (a name another model already uses, …).
    #[error("{0}")]
    Refused(String),
    #[error("the database cannot be reached: {0}")]
    Unavailable(String),
}

/// The scheduler's view of one model, for `status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeView {
    pub state: String,
    pub tier: Option<String>,
    pub replicas: u32,
    pub device_bytes: u64,
    pub last_wake_ms: Option<f64>,
}

/// What the operator needs of the database and the scheduler.
pub trait ModelStore: Send + Sync {
    /// The database's declaration of `name`, if any.
    fn get<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<ModelDecl>>;
    /// Creates or replaces the declaration (validated and audited as any change).
    fn put(&self, decl: ModelDecl) -> StoreFuture<'_, ()>;
    /// Removes `name` from the database.
    fn remove<'a>(&'a self, name: &'a str) -> StoreFuture<'a, ()>;
    /// The scheduler's view of `name`, where this process runs the scheduler.
    fn runtime<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<RuntimeView>>;
}

/// Why a reconcile pass failed; the controller retries it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the Kubernetes API failed: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the Model has no namespace")]
    NoNamespace,
    #[error("finalizer: {0}")]
    Finalizer(String),
}

/// What every pass shares.
pub struct Context {
    pub client: kube::Client,
    pub store: Arc<dyn ModelStore>,
    pub recorder: Recorder,
    /// How often a settled Model is looked at again: its status refreshed
    /// from the scheduler, and a change made through GraphQL carried into it.
    pub refresh: Duration,
}

/// One reconcile pass over `model`.
///
/// # Errors
/// A failed API call or an unreachable database; the controller retries.
pub async fn reconcile(model: Arc<ModelResource>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = model.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<ModelResource> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, model, |event| async {
        match event {
            Finalized::Apply(m) => apply(&api, &m, &namespace, &ctx).await,
            Finalized::Cleanup(m) => cleanup(&m, &namespace, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

/// How long the controller waits before retrying a failed pass.
pub fn error_policy(_model: Arc<ModelResource>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "Reconciling a Model failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// What a pass that kept both sides in step did, for the status and the events.
struct Pass {
    /// The generation the database now holds.
    observed: i64,
    synced_digest: String,
    reason: &'static str,
    note: Option<(EventType, &'static str, &'static str)>,
}

async fn apply(api: &Api<ModelResource>, m: &ModelResource, namespace: &str, ctx: &Context) -> Result<Action, Error> {
    let name = m.name_any();
    let status = m.status.clone().unwrap_or_default();
    let decl = match to_decl(&name, namespace, &m.spec) {
        Ok(d) => d,
        Err(errors) => {
            let message = errors.iter().map(FieldError::to_string).collect::<Vec<_>>().join("; ");
            refuse(api, ctx, m, status, "Invalid", &message).await?;
            return Ok(Action::await_change());
        }
    };
    let current = ctx.store.get(&name).await?;
    // The resource names a project; a model of that name elsewhere is not its to change.
    if let Some(other) = current.as_ref().filter(|c| c.spec.project != decl.spec.project) {
        let message = format!("the name {name} is taken by a model of project {}", other.spec.project);
        refuse(api, ctx, m, status, "NameTaken", &message).await?;
        return Ok(Action::requeue(ctx.refresh));
    }
    let pass = match synchronize(api, m, ctx, &status, decl, current.as_ref()).await? {
        Ok(pass) => pass,
        Err(stop) => return Ok(stop),
    };
    if let Some((kind, reason, text)) = pass.note {
        event(ctx, m, kind, reason, text).await;
    }
    let runtime = ctx.store.runtime(&name).await.unwrap_or(None);
    let next = next_status(&status, &pass, runtime);
    if next != status {
        write_status(api, &name, next).await?;
    }
    Ok(Action::requeue(ctx.refresh))
}

/// Records why the resource cannot be applied: a warning event, and
/// `Synced=False` with `reason`.
async fn refuse(
    api: &Api<ModelResource>,
    ctx: &Context,
    m: &ModelResource,
    status: ModelResourceStatus,
    reason: &str,
    message: &str,
) -> Result<(), Error> {
    event(ctx, m, EventType::Warning, reason, message).await;
    let synced = condition(&status, "Synced", false, reason, message);
    write_status(api, &m.name_any(), ModelResourceStatus { conditions: synced, ..status }).await
}

/// Brings the resource and the database in step, whichever way [`flow`]
/// says; `Err` holds what the controller does next when the pass stops short.
async fn synchronize(
    api: &Api<ModelResource>,
    m: &ModelResource,
    ctx: &Context,
    status: &ModelResourceStatus,
    decl: ModelDecl,
    current: Option<&ModelDecl>,
) -> Result<Result<Pass, Action>, Error> {
    let name = m.name_any();
    let generation = m.metadata.generation.unwrap_or(0);
    let wanted = digest(&decl);
    let current_digest = current.map(digest);
    let seen = Seen {
        generation,
        observed_generation: status.observed_generation,
        database: current_digest.as_deref(),
        synced: status.synced_digest.as_deref(),
        resource: &wanted,
    };
    let decided = flow(seen);
    Ok(Ok(match decided {
        Flow::InSync => Pass { observed: generation, synced_digest: wanted, reason: "InSync", note: None },
        Flow::ToDatabase | Flow::ConflictResourceWins => {
            match ctx.store.put(decl).await {
                Ok(()) => {}
                Err(StoreError::Refused(why)) => {
                    refuse(api, ctx, m, status.clone(), "Rejected", &why).await?;
                    return Ok(Err(Action::await_change()));
                }
                Err(e) => return Err(e.into()),
            }
            let (reason, note) = if decided == Flow::ConflictResourceWins {
                let text = "the model was also changed through GraphQL; this resource's spec won";
                ("ResourceWon", (EventType::Warning, "Conflict", text))
            } else {
                ("Applied", (EventType::Normal, "Synced", "written to the database"))
            };
            Pass { observed: generation, synced_digest: wanted, reason, note: Some(note) }
        }
        Flow::ToResource => {
            let Some(db) = current else { return Ok(Err(Action::requeue(ctx.refresh))) };
            let spec = from_decl(db);
            let params = PatchParams::default();
            let patched = api.patch(&name, &params, &Patch::Merge(json!({"spec": spec}))).await?;
            Pass {
                observed: patched.metadata.generation.unwrap_or(generation),
                synced_digest: digest(db),
                reason: "FromDatabase",
                note: Some((EventType::Normal, "Updated", "spec updated from a change made through GraphQL")),
            }
        }
    }))
}

/// The status after `pass`, with the model's runtime where the scheduler reports one.
fn next_status(status: &ModelResourceStatus, pass: &Pass, runtime: Option<RuntimeView>) -> ModelResourceStatus {
    // A pass that found nothing to do keeps the condition of the pass that did something.
    let already_synced = status.conditions.iter().any(|c| c.type_ == "Synced" && c.status == "True");
    let conditions = if pass.reason == "InSync" && already_synced {
        status.conditions.clone()
    } else {
        condition(status, "Synced", true, pass.reason, "the database holds this spec")
    };
    let mut next = ModelResourceStatus {
        observed_generation: Some(pass.observed),
        synced_digest: Some(pass.synced_digest.clone()),
        conditions,
        ..status.clone()
    };
    if let Some(rt) = runtime {
        let ready = rt.state != "failed";
        let message = format!("{} ({})", rt.state, rt.tier.as_deref().unwrap_or("no tier"));
        next.conditions = condition(
            &ModelResourceStatus { conditions: next.conditions.clone(), ..Default::default() },
            "Ready",
            ready,
            if ready { "Servable" } else { "Failed" },
            &message,
        );
        next.state = Some(rt.state);
        next.tier = rt.tier;
        next.replicas = rt.replicas;
        next.device_bytes = rt.device_bytes;
        next.last_wake_ms = rt.last_wake_ms;
    }
    next
}

async fn cleanup(m: &ModelResource, namespace: &str, ctx: &Context) -> Result<Action, Error> {
    let name = m.name_any();
    let project = m.spec.project.clone().unwrap_or_else(|| namespace.to_owned());
    // Only the model this resource declared: a model of that name in another project stays.
    if let Some(current) = ctx.store.get(&name).await?
        && current.spec.project.as_str() == project
    {
        ctx.store.remove(&name).await?;
        event(ctx, m, EventType::Normal, "Removed", "removed from the database; requests in flight finished").await;
    }
    Ok(Action::await_change())
}

/// `status.conditions` with condition `type_` set, its transition time
/// kept when its status did not change.
fn condition(status: &ModelResourceStatus, type_: &str, ok: bool, reason: &str, message: &str) -> Vec<Condition> {
    let value = if ok { "True" } else { "False" };
    let mut conditions: Vec<Condition> = status.conditions.iter().filter(|c| c.type_ != type_).cloned().collect();
    let since = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == value)
        .map_or_else(|| Timestamp::now().to_string(), |c| c.last_transition_time.clone());
    conditions.push(Condition {
        type_: type_.to_owned(),
        status: value.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: since,
    });
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    conditions
}

async fn write_status(api: &Api<ModelResource>, name: &str, status: ModelResourceStatus) -> Result<(), Error> {
    let params = PatchParams::apply(MANAGER).force();
    let patch = json!({"apiVersion": "greenthread.ai/v1alpha1", "kind": "Model", "status": status});
    api.patch_status(name, &params, &Patch::Apply(patch)).await?;
    Ok(())
}

/// Records an event on the Model; a failure to record is logged, not fatal.
async fn event(ctx: &Context, m: &ModelResource, type_: EventType, reason: &str, note: &str) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1024).collect()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &m.object_ref(&())).await {
        tracing::warn!(error = %e, "Cannot record an event");
    }
}
