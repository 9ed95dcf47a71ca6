//! Request metrics, named after what vLLM and TGI users already chart:
//! time to first token, inter-token latency, end-to-end latency, queue
//! time and tokens per model, requests running and waiting, and per-route
//! HTTP counts and durations. Latencies are what the client sees at this
//! server, whichever engine or node generated the answer.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::ModelLabels;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

/// 1 ms to ~65 s: a warm first token takes milliseconds, one behind a wake seconds.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// 0.5 ms to ~2 s between tokens.
fn token_gap_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 13))
}

/// The request metrics of one server.
pub struct RequestMetrics {
    time_to_first_token: Family<ModelLabels, Histogram>,
    inter_token_latency: Family<ModelLabels, Histogram>,
    e2e_latency: Family<ModelLabels, Histogram>,
    queue_time: Family<ModelLabels, Histogram>,
    prompt_tokens: Family<ModelLabels, Counter>,
    generation_tokens: Family<ModelLabels, Counter>,
    pub(super) running: Family<ModelLabels, Gauge>,
    pub(super) waiting: Family<ModelLabels, Gauge>,
    batch_size: Family<ModelLabels, Gauge>,
    kv_cache_usage: Family<ModelLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    prefix_cache_queries: Family<ModelLabels, Counter>,
    prefix_cache_hits: Family<ModelLabels, Counter>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram>,
}

/// What one finished request adds to the metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Finished {
    /// Seconds waiting for the model (a wake, a lease) before it ran.
    pub queue_s: f64,
    pub e2e_s: f64,
    /// Input and output tokens, where they were counted.
    pub tokens: Option<(u32, u32)>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestMetrics {
    pub fn new() -> Self {
        Self {
            time_to_first_token: Family::new_with_constructor(latency_histogram),
            inter_token_latency: Family::new_with_constructor(token_gap_histogram),
            e2e_latency: Family::new_with_constructor(latency_histogram),
            queue_time: Family::new_with_constructor(latency_histogram),
            prompt_tokens: Family::default(),
            generation_tokens: Family::default(),
            running: Family::default(),
            waiting: Family::default(),
            batch_size: Family::default(),
            kv_cache_usage: Family::default(),
            prefix_cache_queries: Family::default(),
            prefix_cache_hits: Family::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
        }
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "time_to_first_token_seconds",
            "Time from a request's arrival to its first generated output, for streamed answers",
            self.time_to_first_token.clone(),
        );
        registry.register(
            "inter_token_latency_seconds",
            "Time between streamed pieces of generated output",
            self.inter_token_latency.clone(),
        );
        registry.register(
            "e2e_request_latency_seconds",
            "Time from a request's arrival to its answer's last byte",
            self.e2e_latency.clone(),
        );
        registry.register(
            "request_queue_time_seconds",
            "Time a request waited for its model (a wake, a replica) before it ran",
            self.queue_time.clone(),
        );
        registry.register("prompt_tokens", "Prompt tokens processed", self.prompt_tokens.clone());
        registry.register("generation_tokens", "Tokens generated", self.generation_tokens.clone());
        registry.register("num_requests_running", "Requests a model is generating for now", self.running.clone());
        registry.register(
            "num_requests_waiting",
            "Requests waiting for a model's free sequence or its wake",
            self.waiting.clone(),
        );
        registry.register(
            "batch_size",
            "Sequences in the engine's batch now (the builtin engine, in this process)",
            self.batch_size.clone(),
        );
        registry.register(
            "kv_cache_usage_perc",
            "Share of the KV cache in use, 0 to 1 (the builtin engine, in this process)",
            self.kv_cache_usage.clone(),
        );
        registry.register(
            "prefix_cache_queries",
            "Prompt tokens looked up in the prefix cache (the builtin engine, in this process)",
            self.prefix_cache_queries.clone(),
        );
        registry.register(
            "prefix_cache_hits",
            "Prompt tokens whose keys and values came from the prefix cache instead of a forward pass",
            self.prefix_cache_hits.clone(),
        );
        registry.register("http_requests", "HTTP requests answered, by route and status", self.http_requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time from an HTTP request's arrival to its answer's last byte, by route",
            self.http_duration.clone(),
        );
    }

    /// Forgets the gauges of models no longer listed.
    pub(super) fn clear_gauges(&self) {
        self.running.clear();
        self.waiting.clear();
        self.batch_size.clear();
        self.kv_cache_usage.clear();
    }

    /// The engine's own gauges of a model.
    pub(super) fn engine(&self, labels: &ModelLabels, load: greenthread_node_runtime::EngineLoad) {
        self.batch_size.get_or_create(labels).set(load.running as i64);
        let used = if load.kv_capacity == 0 { 0.0 } else { load.kv_tokens as f64 / load.kv_capacity as f64 };
        self.kv_cache_usage.get_or_create(labels).set(used);
        // The engine keeps these totals itself (across the model's sleeps);
        // the counters show them as they stand.
        let set = |family: &Family<ModelLabels, Counter>, total: u64| {
            family.get_or_create(labels).inner().store(total, std::sync::atomic::Ordering::Relaxed);
        };
        set(&self.prefix_cache_queries, load.prefix_queried_tokens);
        set(&self.prefix_cache_hits, load.prefix_hit_tokens);
    }

    fn model(model: &str) -> ModelLabels {
        ModelLabels { model: model.to_owned() }
    }

    pub fn first_token(&self, model: &str, seconds: f64) {
        self.time_to_first_token.get_or_create(&Self::model(model)).observe(seconds);
    }

    pub fn token_gap(&self, model: &str, seconds: f64) {
        self.inter_token_latency.get_or_create(&Self::model(model)).observe(seconds);
    }

    pub fn finished(&self, model: &str, done: &Finished) {
        let labels = Self::model(model);
        self.e2e_latency.get_or_create(&labels).observe(done.e2e_s);
        self.queue_time.get_or_create(&labels).observe(done.queue_s);
        if let Some((input, output)) = done.tokens {
            self.prompt_tokens.get_or_create(&labels).inc_by(u64::from(input));
            self.generation_tokens.get_or_create(&labels).inc_by(u64::from(output));
        }
    }

    /// One HTTP exchange, once its answer has gone out (`route` is the
    /// route's pattern, so the label set stays bounded).
    pub fn http(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let (method, route) = (method.to_owned(), route.to_owned());
        self.http_requests.get_or_create(&HttpLabels { method: method.clone(), route: route.clone(), status }).inc();
        self.http_duration.get_or_create(&RouteLabels { method, route }).observe(seconds);
    }
}
