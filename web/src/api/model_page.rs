//! What one model's page shows: its placements on the nodes, its last
//! hour of state changes and its times to first token.

use super::operations as op;
use super::{Scaling, call, count};

#[derive(Debug, Clone, PartialEq)]
pub struct PlacementRow {
    pub node: String,
    pub state: String,
    pub tier: Option<String>,
    pub device_bytes: u64,
    pub in_flight: u32,
    pub last_wake_ms: Option<f64>,
}

/// One state change of one replica.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRow {
    /// RFC 3339.
    pub at: String,
    pub node: String,
    pub from: String,
    pub to: String,
    pub cause: String,
    pub preempted_by: Option<String>,
    pub after_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FirstToken {
    pub count: u32,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelDetail {
    pub name: String,
    pub project: String,
    pub engine: String,
    pub scaling: Scaling,
    pub state: Option<String>,
    pub failure: Option<String>,
    pub placements: Vec<PlacementRow>,
    pub changes: Vec<ChangeRow>,
    pub first_token: FirstToken,
}

pub async fn detail(key: &str, name: &str) -> Result<ModelDetail, String> {
    let m = call::<op::ModelPage>(key, op::model_page::Variables { name: name.to_owned() }).await?.model;
    let s = m.scaling;
    let (state, failure, placements) = match m.runtime {
        Some(r) => (
            Some(r.state),
            r.failure,
            r.placements
                .into_iter()
                .map(|p| PlacementRow {
                    node: p.node,
                    state: p.state,
                    tier: p.tier,
                    device_bytes: count(p.device_bytes),
                    in_flight: count(p.in_flight),
                    last_wake_ms: p.last_wake_ms,
                })
                .collect(),
        ),
        None => (None, None, Vec::new()),
    };
    let t = m.last_hour.first_token;
    Ok(ModelDetail {
        name: m.name,
        project: m.project.name,
        engine: m.engine,
        scaling: Scaling {
            min_replicas: count(s.min_replicas),
            max_replicas: count(s.max_replicas),
            idle_timeout: s.idle_timeout,
            warm_tier: s.warm_tier,
            never_preempt: s.never_preempt,
        },
        state,
        failure,
        placements,
        changes: m
            .last_hour
            .changes
            .into_iter()
            .map(|c| ChangeRow {
                at: c.at,
                node: c.node,
                from: c.from,
                to: c.to,
                cause: c.cause,
                preempted_by: c.preempted_by,
                after_ms: c.after_ms,
            })
            .collect(),
        first_token: FirstToken { count: count(t.count), p50_ms: t.p50_ms, p95_ms: t.p95_ms, p99_ms: t.p99_ms },
    })
}
