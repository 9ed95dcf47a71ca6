//! A real gateway on a loopback port, serving tiny generated models.

#![allow(dead_code)]

use std::time::Duration;

use greenthread_api::http::ConnectionLimits;
use greenthread_api::http::limits::Limits;
use greenthread_api::{Budgets, Platform};
use greenthread_core::{ArtifactUri, ModelAlias, ModelName, ModelSpec, Scaling, Sha256Digest};
use greenthread_node_runtime::builtin::BuiltinEngine;
use greenthread_node_runtime::fixtures::{TinyBert, TinyModel};
use greenthread_node_runtime::node::LocalArtifacts;
use greenthread_scheduler::PreemptionRules;

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    /// Off once the server drains.
    pub readiness: greenthread_api::http::Readiness,
    /// Sending (or dropping) it is the server's shutdown signal.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The server's task: its result once it has drained.
    pub served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// A model to serve: its name, aliases and tiny weights.
pub struct Served {
    pub name: &'static str,
    pub aliases: Vec<&'static str>,
    pub model: TinyModel,
    pub context_length: Option<u32>,
    pub scaling: Scaling,
    /// A digest the artifact does not have: the model must be refused.
    pub wrong_sha256: bool,
    /// Serve this embedding model (a Hugging Face directory) instead of `model`.
    pub bert: Option<TinyBert>,
    /// The kind the spec declares.
    pub kind: Option<greenthread_core::ModelKind>,
    /// Serve `model` from a Hugging Face directory with tensors of this type, not a GGUF file.
    pub checkpoint: Option<candle_core::DType>,
}

impl Served {
    pub fn new(name: &'static str, model: TinyModel) -> Self {
        Self {
            name,
            aliases: Vec::new(),
            model,
            context_length: None,
            scaling: Scaling::default(),
            wrong_sha256: false,
            bert: None,
            kind: None,
            checkpoint: None,
        }
    }

    /// A chat model served from a Hugging Face directory.
    pub fn checkpoint(name: &'static str, model: TinyModel, dtype: candle_core::DType) -> Self {
        Self { checkpoint: Some(dtype), ..Self::new(name, model) }
    }

    /// An embedding model, served from a model directory.
    pub fn embedding(name: &'static str, bert: TinyBert) -> Self {
        Self { bert: Some(bert), ..Self::new(name, TinyModel::qwen2()) }
    }

    pub fn scaling(mut self, f: impl FnOnce(&mut Scaling)) -> Self {
        f(&mut self.scaling);
        self
    }

    /// Declares the model's kind in its spec.
    pub fn kind(mut self, kind: greenthread_core::ModelKind) -> Self {
        self.kind = Some(kind);
        self
    }

    pub fn corrupt(mut self) -> Self {
        self.wrong_sha256 = true;
        self
    }

    pub fn alias(mut self, alias: &'static str) -> Self {
        self.aliases.push(alias);
        self
    }

    pub fn context(mut self, tokens: u32) -> Self {
        self.context_length = Some(tokens);
        self
    }
}

/// How the platform under test runs.
pub struct Setup {
    pub device_budget: u64,
    pub limits: Limits,
    pub rules: PreemptionRules,
    pub connections: ConnectionLimits,
}

impl Default for Setup {
    /// Plenty of device memory, and preemption without residency delays so
    /// swap tests run in milliseconds.
    fn default() -> Self {
        Self {
            device_budget: 1 << 30,
            limits: Limits::default(),
            rules: PreemptionRules { min_residency: Duration::ZERO, force_after: Duration::ZERO },
            connections: ConnectionLimits::default(),
        }
    }
}

impl TestServer {
    pub async fn start(models: Vec<Served>) -> Self {
        Self::start_with(models, Setup::default()).await
    }

    pub async fn start_with(models: Vec<Served>, setup: Setup) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let specs: Vec<ModelSpec> = models
            .iter()
            .map(|m| {
                let path = match (&m.bert, m.checkpoint) {
                    (Some(bert), _) => {
                        let path = dir.path().join(m.name);
                        bert.write_dir(&path).unwrap();
                        path
                    }
                    (None, Some(dtype)) => {
                        let path = dir.path().join(m.name);
                        m.model.write_hf(&path, dtype).unwrap();
                        path
                    }
                    (None, None) => {
                        let path = dir.path().join(format!("{}.gguf", m.name));
                        m.model.write(&path).unwrap();
                        path
                    }
                };
                let mut spec = ModelSpec::new(ModelName::parse(m.name).unwrap(), ArtifactUri::File(path));
                spec.aliases = m.aliases.iter().map(|a| ModelAlias::parse(a).unwrap()).collect();
                spec.context_length = m.context_length;
                spec.scaling = m.scaling.clone();
                spec.kind = m.kind;
                if m.wrong_sha256 {
                    spec.sha256 = Some(Sha256Digest::parse(&"0".repeat(64)).unwrap());
                }
                spec
            })
            .collect();
        let platform = Platform {
            budgets: Budgets { device: setup.device_budget, ram: 1 << 30, disk: 1 << 30 },
            engine: BuiltinEngine::cpu().with_max_sequences(8),
            limits: setup.limits,
            rules: setup.rules,
            local_node: true,
            cluster_token: None,
            local_artifacts: LocalArtifacts::Anywhere,
        };
        let state = greenthread_api::start_platform(&specs, &dir.path().join("data"), platform).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let readiness = state.readiness.clone();
        let router = greenthread_api::router::router(state);
        let drain = greenthread_api::http::Drain { readiness: readiness.clone(), timeout: Duration::from_secs(20) };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            let _ = stopped.await;
        };
        let served =
            tokio::spawn(greenthread_api::http::serve_with(listener, router, setup.connections, drain, signal));
        Self { base, client: reqwest::Client::new(), readiness, stop: Some(stop), served: Some(served), _dir: dir }
    }

    /// Sends the shutdown signal, as SIGTERM does.
    pub fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs `body` as JSON; returns the status and the parsed body.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let resp = self.client.post(self.url(path)).json(&body).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        let resp = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// The `/metrics` value of a sample, e.g. `greenthread_model_wakes_total{model="a",tier="ram"}`; 0 if absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.client.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// The `/status` entry of `model`.
    pub async fn model_status(&self, model: &str) -> serde_json::Value {
        let (_, status) = self.get("/status").await;
        status["models"].as_array().unwrap().iter().find(|m| m["name"] == model).unwrap().clone()
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self.client.get(self.url(path)).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// POSTs a streaming request and returns every `data:` payload in order.
    pub async fn stream(&self, path: &str, body: serde_json::Value) -> Vec<String> {
        let resp = self.client.post(self.url(path)).json(&body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let text = resp.text().await.unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.trim().is_empty()).collect();
        // Every stream ends with its exact usage as an SSE comment, just before `[DONE]`.
        let (chunks, tail) = events.split_at(events.len() - 2);
        let usage =
            tail[0].strip_prefix(": usage ").unwrap_or_else(|| panic!("no usage comment before [DONE]: {tail:?}"));
        assert!(serde_json::from_str::<serde_json::Value>(usage).unwrap()["completion_tokens"].is_u64());
        chunks
            .iter()
            .chain(&tail[1..])
            .map(|e| e.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data line: {e:?}")).to_owned())
            .collect()
    }
}

/// The chat body used by most tests: greedy, so answers repeat exactly.
pub fn chat(model: &str, text: &str, max_tokens: u32) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "temperature": 0,
        "max_tokens": max_tokens,
    })
}
