//! A model's state on the scheduler as the schema shows it.

use async_graphql::SimpleObject;
use greenthread_core::ModelState;
use greenthread_scheduler::ModelStatus;

/// A model's state on the scheduler right now.
#[derive(SimpleObject)]
pub struct ModelRuntime {
    /// `absent`, `fetching`, `staged`, `waking`, `serving`, `draining`, `sleeping` or `failed`.
    pub state: String,
    /// The tier its weights are in while staged or sleeping (`ram`, `disk`, `object`);
    /// `device` while awake.
    pub tier: Option<String>,
    pub failure: Option<String>,
    /// Replicas holding device memory.
    pub replicas: u32,
    pub device_bytes: u64,
    pub in_flight: u32,
    pub waiting: u32,
    pub last_wake_ms: Option<f64>,
    pub last_wake_from: Option<String>,
    /// How far its wake has come, while it wakes.
    pub wake_progress: Option<WakeProgressInfo>,
    /// Where it is: one entry per node that holds it.
    pub placements: Vec<Placement>,
}

/// A model on one node.
#[derive(SimpleObject)]
pub struct Placement {
    pub node: String,
    pub state: String,
    pub tier: Option<String>,
    pub device_bytes: u64,
    pub in_flight: u32,
    pub last_wake_ms: Option<f64>,
}

/// A wake under way.
#[derive(SimpleObject, Debug, Clone, PartialEq)]
pub struct WakeProgressInfo {
    /// The tier the weights come from.
    pub from_tier: String,
    pub elapsed_ms: f64,
    /// Estimated from the last wake from the same tier, when there was one.
    pub percent: Option<i32>,
    /// `waking qwen from disk, 40%`: what a waiting stream is told.
    pub message: String,
}

impl WakeProgressInfo {
    pub fn of(model: &str, p: &greenthread_core::WakeProgress) -> Self {
        Self {
            from_tier: p.from.to_string(),
            elapsed_ms: p.elapsed.as_secs_f64() * 1000.0,
            percent: p.percent().map(i32::from),
            message: p.describe(model),
        }
    }
}

/// The tier a model's weights are in, as GraphQL and the CRD's status name it.
pub fn tier_of(state: &ModelState) -> Option<String> {
    state.weights_tier().map(|t| t.as_str().to_owned())
}

impl From<&ModelStatus> for ModelRuntime {
    fn from(s: &ModelStatus) -> Self {
        Self {
            state: s.state.name().to_owned(),
            tier: tier_of(&s.state),
            failure: match &s.state {
                ModelState::Failed { reason } => Some(reason.clone()),
                _ => None,
            },
            replicas: s.replicas,
            device_bytes: s.device_bytes,
            in_flight: s.in_flight,
            waiting: s.waiting as u32,
            last_wake_ms: s.last_wake.map(|w| w.duration.as_secs_f64() * 1000.0),
            last_wake_from: s.last_wake.map(|w| w.from.to_string()),
            wake_progress: s.wake_progress.as_ref().map(|p| WakeProgressInfo::of(s.name.as_str(), p)),
            placements: s
                .replica_list
                .iter()
                .map(|r| Placement {
                    node: r.node.to_string(),
                    state: r.state.name().to_owned(),
                    tier: tier_of(&r.state),
                    device_bytes: r.device_bytes,
                    in_flight: r.in_flight,
                    last_wake_ms: r.last_wake.map(|w| w.duration.as_secs_f64() * 1000.0),
                })
                .collect(),
        }
    }
}
