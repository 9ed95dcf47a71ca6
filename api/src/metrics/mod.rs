//! Prometheus metrics: one registry with typed labels. Lifecycle counters
//! and histograms are fed by the model manager's events, request latencies
//! by the requests themselves ([`requests`]); gauges of the current state
//! are filled from `/status`'s data when `/metrics` is scraped.

pub mod recent;
pub mod requests;

use std::sync::Mutex;

use greenthread_core::{ModelName, ModelState, TierUsage, WakeReport};
use greenthread_scheduler::{Cause, ManagerStatus, Observer, TransitionEvent};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    model: String,
    from: String,
    to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    model: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WakeLabels {
    model: String,
    tier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SleepLabels {
    model: String,
    cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabels {
    tier: String,
}

fn seconds_histogram() -> Histogram {
    // 1 ms to ~33 s: wakes of small models take milliseconds, big ones seconds.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric GreenThread exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    transitions: Family<TransitionLabels, Counter>,
    state_seconds: Family<StateLabels, Histogram>,
    wakes: Family<WakeLabels, Counter>,
    wake_seconds: Family<WakeLabels, Histogram>,
    sleeps: Family<SleepLabels, Counter>,
    wake_timeouts: Family<ModelLabels, Counter>,
    model_state: Family<StateLabels, Gauge>,
    model_device_bytes: Family<ModelLabels, Gauge>,
    model_in_flight: Family<ModelLabels, Gauge>,
    tier_budget: Family<TierLabels, Gauge>,
    tier_used: Family<TierLabels, Gauge>,
    pub requests: requests::RequestMetrics,
    /// The last hour of each model, for the console's model page.
    pub recent: std::sync::Arc<recent::Recent>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("greenthread");
        let m = Self {
            transitions: Family::default(),
            state_seconds: Family::new_with_constructor(seconds_histogram),
            wakes: Family::default(),
            wake_seconds: Family::new_with_constructor(seconds_histogram),
            sleeps: Family::default(),
            wake_timeouts: Family::default(),
            model_state: Family::default(),
            model_device_bytes: Family::default(),
            model_in_flight: Family::default(),
            tier_budget: Family::default(),
            tier_used: Family::default(),
            requests: requests::RequestMetrics::new(),
            recent: std::sync::Arc::default(),
            registry: Mutex::new(Registry::default()),
        };
        m.requests.register(&mut registry);
        registry.register("model_transitions", "Lifecycle transitions of models", m.transitions.clone());
        registry.register(
            "model_state_duration_seconds",
            "Time a model spent in a state before leaving it",
            m.state_seconds.clone(),
        );
        registry.register("model_wakes", "Wakes, by the tier the weights came from", m.wakes.clone());
        registry.register("model_wake_duration_seconds", "Wake time, by source tier", m.wake_seconds.clone());
        registry.register("model_sleeps", "Sleeps, by cause (idle, preempted or operator)", m.sleeps.clone());
        registry.register(
            "wake_timeouts",
            "Requests answered 503 because a wake took too long",
            m.wake_timeouts.clone(),
        );
        registry.register("model_state", "1 for the state each model is in", m.model_state.clone());
        registry.register("model_device_bytes", "Device bytes each model holds", m.model_device_bytes.clone());
        registry.register("model_requests_in_flight", "Requests each model is serving", m.model_in_flight.clone());
        registry.register("tier_budget_bytes", "Byte budget of each tier of this node", m.tier_budget.clone());
        registry.register("tier_used_bytes", "Bytes in use in each tier of this node", m.tier_used.clone());
        *m.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = registry;
        m
    }

    /// The text exposition, after refreshing the state gauges from the
    /// scheduler's `status` and `tiers` (where this server runs one) and the
    /// requests `in_hand` per model (running and waiting).
    pub fn render(&self, scheduler: Option<(&ManagerStatus, &[TierUsage])>, in_hand: &[InHand]) -> String {
        self.requests.clear_gauges();
        for m in in_hand {
            let labels = ModelLabels { model: m.model.clone() };
            self.requests.running.get_or_create(&labels).set(m.running as i64);
            self.requests.waiting.get_or_create(&labels).set(m.waiting as i64);
            if let Some(load) = m.engine {
                self.requests.engine(&labels, load);
            }
        }
        if let Some((status, tiers)) = scheduler {
            self.refresh_lifecycle(status, tiers);
        }
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    fn refresh_lifecycle(&self, status: &ManagerStatus, tiers: &[TierUsage]) {
        self.model_state.clear();
        for m in &status.models {
            let model = m.name.to_string();
            self.model_state.get_or_create(&StateLabels { model: model.clone(), state: m.state.name().into() }).set(1);
            self.model_device_bytes.get_or_create(&ModelLabels { model: model.clone() }).set(m.device_bytes as i64);
            self.model_in_flight.get_or_create(&ModelLabels { model }).set(i64::from(m.in_flight));
        }
        let device = TierLabels { tier: "device".into() };
        self.tier_budget.get_or_create(&device).set(status.device_budget as i64);
        self.tier_used.get_or_create(&device).set(status.device_used as i64);
        for t in tiers {
            let labels = TierLabels { tier: t.tier.to_string() };
            self.tier_budget.get_or_create(&labels).set(t.budget as i64);
            self.tier_used.get_or_create(&labels).set(t.used as i64);
        }
    }
}

/// A model's requests in hand at this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InHand {
    pub model: String,
    pub running: u64,
    pub waiting: u64,
    /// The engine's own view, where it runs in this process and can tell.
    pub engine: Option<greenthread_node_runtime::EngineLoad>,
}

impl Observer for Metrics {
    fn transition(&self, e: &TransitionEvent) {
        let model = e.model.to_string();
        self.recent.changed(
            &model,
            recent::Change {
                at: chrono::Utc::now(),
                node: e.node.to_string(),
                from: e.from.name().into(),
                to: e.to.name().into(),
                cause: e.cause.as_str().into(),
                preempted_by: match &e.cause {
                    Cause::Preempted { by } => Some(by.to_string()),
                    _ => None,
                },
                after: e.after,
            },
        );
        self.transitions
            .get_or_create(&TransitionLabels {
                model: model.clone(),
                from: e.from.name().into(),
                to: e.to.name().into(),
            })
            .inc();
        self.state_seconds
            .get_or_create(&StateLabels { model: model.clone(), state: e.from.name().into() })
            .observe(e.after.as_secs_f64());
        if matches!(e.to, ModelState::Sleeping { .. }) {
            let cause = match e.cause {
                Cause::Preempted { .. } => "preempted",
                Cause::Operator => "operator",
                _ => "idle",
            };
            self.sleeps.get_or_create(&SleepLabels { model, cause: cause.into() }).inc();
        }
    }

    fn woke(&self, model: &ModelName, report: &WakeReport) {
        let labels = WakeLabels { model: model.to_string(), tier: report.from.to_string() };
        self.wakes.get_or_create(&labels).inc();
        self.wake_seconds.get_or_create(&labels).observe(report.duration.as_secs_f64());
    }

    fn wake_timed_out(&self, model: &ModelName) {
        self.wake_timeouts.get_or_create(&ModelLabels { model: model.to_string() }).inc();
    }
}
