//! A model's last hour as this server saw it: its state changes and its
//! times to first token (`Model.lastHour`), for the console's model page.

use std::sync::Arc;

use async_graphql::{Context, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::errors::principal;
use crate::catalog::ModelCatalog;
use crate::metrics::recent::{self, Change, Recent};

/// One state change of one replica.
#[derive(SimpleObject)]
pub struct ModelChange {
    pub at: DateTime<Utc>,
    pub node: String,
    pub from: String,
    pub to: String,
    /// `request`, `idle`, `preempted`, `startup`, `failure`, `updated` or `operator`.
    pub cause: String,
    /// The model a preemption made room for.
    pub preempted_by: Option<String>,
    /// How long the replica was in `from`, in milliseconds.
    pub after_ms: f64,
}

impl From<Change> for ModelChange {
    fn from(c: Change) -> Self {
        Self {
            at: c.at,
            node: c.node,
            from: c.from,
            to: c.to,
            cause: c.cause,
            preempted_by: c.preempted_by,
            after_ms: c.after.as_secs_f64() * 1000.0,
        }
    }
}

/// Times to first token of streamed answers, in milliseconds.
#[derive(SimpleObject)]
pub struct FirstTokenTimes {
    pub count: u32,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The last hour of a model (in memory: a restart forgets it).
pub struct LastHour {
    pub model: String,
}

fn since(minutes: u32) -> DateTime<Utc> {
    let window = chrono::Duration::from_std(recent::WINDOW).unwrap_or_default();
    Utc::now() - chrono::Duration::minutes(i64::from(minutes)).min(window)
}

#[Object]
impl LastHour {
    /// Its state changes, oldest first: wakes, sleeps and preemptions with
    /// their causes. The model a preemption made room for is named only when
    /// the caller may read it (an admin, or a model of its own project).
    async fn changes(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 60)] minutes: u32,
    ) -> async_graphql::Result<Vec<ModelChange>> {
        let p = principal(ctx)?;
        let Some(recent) = ctx.data_opt::<Arc<Recent>>() else { return Ok(Vec::new()) };
        let catalog = ctx.data_unchecked::<Arc<ModelCatalog>>();
        let readable = |name: &str| {
            p.is_admin() || catalog.by_name(name).is_some_and(|e| e.spec.project.as_str() == p.project.as_str())
        };
        Ok(recent
            .changes(&self.model, since(minutes))
            .into_iter()
            .map(|mut c| {
                c.preempted_by = c.preempted_by.filter(|by| readable(by));
                c.into()
            })
            .collect())
    }

    /// Times to first token of its streamed answers at this server.
    async fn first_token(&self, ctx: &Context<'_>, #[graphql(default = 15)] minutes: u32) -> FirstTokenTimes {
        let times =
            ctx.data_opt::<Arc<Recent>>().map(|r| r.first_tokens(&self.model, since(minutes))).unwrap_or_default();
        FirstTokenTimes {
            count: u32::try_from(times.len()).unwrap_or(u32::MAX),
            p50_ms: recent::percentile(&times, 50.0),
            p95_ms: recent::percentile(&times, 95.0),
            p99_ms: recent::percentile(&times, 99.0),
        }
    }
}
