//! A real gateway on a loopback port, serving tiny generated models.

#![allow(dead_code)]

use std::sync::Arc;

use greenthread_api::http::state::{AppState, Limits};
use greenthread_api::registry::ModelRegistry;
use greenthread_core::{ArtifactUri, ModelAlias, ModelName, ModelSpec};
use greenthread_node_runtime::builtin::BuiltinEngine;
use greenthread_node_runtime::fixtures::TinyModel;

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// A model to serve: its name, aliases and tiny weights.
pub struct Served {
    pub name: &'static str,
    pub aliases: Vec<&'static str>,
    pub model: TinyModel,
    pub context_length: Option<u32>,
}

impl Served {
    pub fn new(name: &'static str, model: TinyModel) -> Self {
        Self { name, aliases: Vec::new(), model, context_length: None }
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

impl TestServer {
    pub async fn start(models: Vec<Served>) -> Self {
        Self::start_with(models, Limits::default()).await
    }

    pub async fn start_with(models: Vec<Served>, limits: Limits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let specs: Vec<ModelSpec> = models
            .iter()
            .map(|m| {
                let path = dir.path().join(format!("{}.gguf", m.name));
                m.model.write(&path).unwrap();
                let mut spec = ModelSpec::new(ModelName::parse(m.name).unwrap(), ArtifactUri::File(path));
                spec.aliases = m.aliases.iter().map(|a| ModelAlias::parse(a).unwrap()).collect();
                spec.context_length = m.context_length;
                spec
            })
            .collect();
        let registry = ModelRegistry::load(&specs, &BuiltinEngine::cpu().with_max_sequences(8), 1_700_000_000).unwrap();
        let state = AppState { models: Arc::new(registry), limits };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(greenthread_api::http::serve(listener, greenthread_api::http::router(state)));
        Self { base, client: reqwest::Client::new(), _dir: dir }
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
        text.split("\n\n")
            .filter(|e| !e.trim().is_empty())
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
