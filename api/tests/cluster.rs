//! A scheduler and its nodes as separate servers on loopback (real HTTP
//! between them): registration, placement, forwarding, node loss, and the
//! cluster token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use greenthread_api::cluster::token::ClusterToken;
use greenthread_api::http::limits::Limits;
use greenthread_api::manage::ArtifactPolicy;
use greenthread_api::node_server;
use greenthread_api::{Budgets, Platform};
use greenthread_core::{ArtifactUri, ModelName, ModelSpec, NodeId};
use greenthread_node_runtime::builtin::BuiltinEngine;
use greenthread_node_runtime::fixtures::{TinyBert, TinyModel};
use greenthread_node_runtime::node::{LocalArtifacts, LocalNode, NodeConfig, TierBudgets};
use greenthread_scheduler::PreemptionRules;
use serde_json::Value;
use support::chat;
use tokio::task::JoinHandle;

const TOKEN: &str = "test-cluster-token-0123456789";

struct NodeProcess {
    id: String,
    url: String,
    node: LocalNode,
    device: u64,
    server: JoinHandle<()>,
    heartbeat: JoinHandle<()>,
}

impl NodeProcess {
    /// Stops answering at once, like a process killed with SIGKILL.
    fn kill(&self) {
        self.server.abort();
        self.heartbeat.abort();
    }
}

struct Cluster {
    base: String,
    client: reqwest::Client,
    nodes: Vec<NodeProcess>,
    specs: Vec<ModelSpec>,
    scheduler: JoinHandle<()>,
    dir: tempfile::TempDir,
}

/// A scheduler (no node of its own) serving `specs`, state in `dir`: its base URL and task.
async fn start_scheduler(specs: &[ModelSpec], dir: &Path) -> (String, JoinHandle<()>) {
    let platform = Platform {
        budgets: Budgets { device: 0, ram: 0, disk: 0 },
        engine: BuiltinEngine::cpu(),
        limits: Limits { wake_timeout: Duration::from_secs(20), ..Limits::default() },
        rules: PreemptionRules { min_residency: Duration::ZERO, force_after: Duration::ZERO },
        local_node: false,
        cluster_token: Some(ClusterToken::new(TOKEN).unwrap()),
        local_artifacts: LocalArtifacts::Anywhere,
    };
    let state = greenthread_api::start_platform(specs, dir, platform).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = greenthread_api::http::serve(listener, greenthread_api::router::router(state)).await;
    });
    (base, task)
}

async fn start_node(id: &str, dir: &Path, control: &str, device: u64) -> NodeProcess {
    let config = NodeConfig {
        cache_dir: dir.join(format!("{id}-cache")),
        budgets: TierBudgets { ram: 1 << 30, disk: 1 << 30 },
        engine: BuiltinEngine::cpu().with_max_sequences(4),
        local_artifacts: LocalArtifacts::within([dir.to_path_buf()], []),
    };
    let node = LocalNode::new(config, &[]).unwrap();
    let handle = node.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let token = ClusterToken::new(TOKEN).unwrap();
    let router =
        node_server::router(node.clone(), token.clone(), Limits::default(), ArtifactPolicy::new([dir.to_path_buf()]));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let heartbeat =
        node_server::spawn_heartbeat(node, NodeId::parse(id).unwrap(), url.clone(), control.to_owned(), device, token);
    NodeProcess { id: id.to_owned(), url, node: handle, device, server, heartbeat }
}

/// A scheduler with no node of its own, `nodes` nodes with `device` bytes
/// each, and `models` tiny models.
async fn start(models: &[&str], nodes: &[&str], device: u64) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let specs: Vec<ModelSpec> = models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            // Models named bert* are embedding models in a model directory.
            let path = if m.starts_with("bert") {
                let path = dir.path().join(m);
                TinyBert::default().write_dir(&path).unwrap();
                path
            } else {
                let path = dir.path().join(format!("{m}.gguf"));
                TinyModel { seed: i as u64 + 1, ..TinyModel::qwen2() }.write(&path).unwrap();
                path
            };
            ModelSpec::new(ModelName::parse(m).unwrap(), ArtifactUri::File(path))
        })
        .collect();
    let (base, scheduler) = start_scheduler(&specs, &dir.path().join("control")).await;
    let mut started = Vec::new();
    for id in nodes {
        started.push(start_node(id, dir.path(), &base, device).await);
    }
    let c = Cluster { base, client: reqwest::Client::new(), nodes: started, specs, scheduler, dir };
    c.wait_for(|s| s["nodes"].as_array().unwrap().len() == nodes.len()).await;
    c
}

impl Cluster {
    async fn status(&self) -> Value {
        self.client.get(format!("{}/status", self.base)).send().await.unwrap().json().await.unwrap()
    }

    async fn wait_for(&self, ready: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..200 {
            let s = self.status().await;
            if ready(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the cluster never reached the expected state: {}", self.status().await);
    }

    async fn chat(&self, model: &str) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}/v1/chat/completions", self.base))
            .json(&chat(model, "Hello", 4))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    fn replica_nodes(status: &Value, model: &str) -> Vec<String> {
        let m = status["models"].as_array().unwrap().iter().find(|m| m["name"] == model).unwrap();
        m["replica_list"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"] == "serving")
            .map(|r| r["node"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_reach_models_on_remote_nodes_and_each_model_runs_where_it_was_placed() {
    // Room for one model each: 119,128 bytes of weights and a KV cache of
    // 512 bytes a token × 512 tokens × 4 sequences make a footprint of 1,167,704.
    let c = start(&["a", "b"], &["n1", "n2"], 1_800_000).await;
    let (code, a) = c.chat("a").await;
    assert_eq!(code, 200, "{a}");
    assert!(a["choices"][0]["message"]["content"].is_string());
    let (code, b) = c.chat("b").await;
    assert_eq!(code, 200, "{b}");
    let status = c.status().await;
    let (on_a, on_b) = (Cluster::replica_nodes(&status, "a"), Cluster::replica_nodes(&status, "b"));
    assert_eq!((on_a.len(), on_b.len()), (1, 1), "{status}");
    assert_ne!(on_a, on_b, "each node has room for one model: they are spread: {status}");
    // The same greedy answer however often it is asked.
    assert_eq!(c.chat("a").await.1["choices"], a["choices"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embeddings_are_forwarded_to_the_node_serving_the_model() {
    let c = start(&["bert"], &["n1"], 1 << 30).await;
    let resp = c
        .client
        .post(format!("{}/v1/embeddings", c.base))
        .json(&serde_json::json!({"model": "bert", "input": ["hello world", "the man"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(body["data"][1]["embedding"].as_array().unwrap().len(), 32);
    assert_eq!(body["usage"]["prompt_tokens"], 8);
    assert_eq!(Cluster::replica_nodes(&c.status().await, "bert"), ["n1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_a_node_dies_its_model_comes_back_on_another_and_requests_keep_succeeding() {
    let c = start(&["a"], &["n1", "n2"], 1 << 30).await;
    let (code, first) = c.chat("a").await;
    assert_eq!(code, 200, "{first}");
    let host = Cluster::replica_nodes(&c.status().await, "a").remove(0);
    c.nodes.iter().find(|n| n.id == host).unwrap().kill();
    // The request right after the kill may find the dead node: it must be retried, not failed.
    let (code, again) = c.chat("a").await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["choices"], first["choices"], "the same weights on the other node");
    let status = c.wait_for(|s| s["nodes"].as_array().unwrap().len() == 1).await;
    let survivor = status["nodes"][0]["id"].as_str().unwrap().to_owned();
    assert_ne!(survivor, host);
    // The dead node's replica went with it (a request still in a kept-alive
    // connection to it may have been its last); the next request finds the
    // model on the survivor.
    let (code, third) = c.chat("a").await;
    assert_eq!(code, 200, "{third}");
    assert_eq!(Cluster::replica_nodes(&c.status().await, "a"), [survivor]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn internal_endpoints_refuse_callers_without_the_cluster_token() {
    let c = start(&["a"], &["n1"], 1 << 30).await;
    assert_eq!(c.chat("a").await.0, 200);
    let node = &c.nodes[0].url;
    let calls = [
        format!("{node}/internal/v1/models/a/wake"),
        format!("{node}/a/v1/chat/completions"),
        format!("{}/internal/v1/nodes/heartbeat", c.base),
    ];
    for url in &calls {
        for auth in [None, Some("Bearer wrong-token-wrong-token-wrong"), Some(TOKEN)] {
            let mut req = c.client.post(url).json(&chat("a", "Hello", 2));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let code = req.send().await.unwrap().status().as_u16();
            assert_eq!(code, 401, "{url} with {auth:?} must be refused");
        }
    }
    // With the token the node answers (the model is awake there).
    let ok = c
        .client
        .post(format!("{node}/a/v1/chat/completions"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .json(&chat("a", "Hello", 2))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(c.client.get(format!("{node}/health")).send().await.unwrap().status().as_u16(), 200);
}

/// A gateway asks for a lease in the query string (a request without a
/// body); a gateway of an earlier version asks in a JSON body, and is
/// granted the same; a question that is not one gets a 400 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_is_granted_whether_asked_in_the_query_or_in_a_json_body() {
    let c = start(&["a"], &["n1"], 1 << 30).await;
    let leases = format!("{}/internal/v1/leases", c.base);
    let grant = |request: reqwest::RequestBuilder| async move {
        let mut answer = request.bearer_auth(TOKEN).send().await.unwrap();
        let status = answer.status().as_u16();
        // A granted lease's stream stays open: read its first line only.
        let first = answer.chunk().await.unwrap().unwrap_or_default();
        (status, serde_json::from_slice::<Value>(first.trim_ascii()).unwrap())
    };
    for request in [
        c.client.post(format!("{leases}?model=a")),
        c.client.post(&leases).json(&serde_json::json!({"model": "a"})),
        c.client.post(&leases).json(&serde_json::json!({"model": "a", "avoid": []})),
    ] {
        let (status, grant) = grant(request).await;
        assert_eq!(status, 200, "{grant}");
        assert_eq!(grant["node"], "n1");
        assert_eq!(grant["base"], c.nodes[0].url.as_str());
    }
    for (request, what) in [
        (c.client.post(format!("{leases}?model=a&avoid=n1,Not%20a%20node")), "avoid"),
        (c.client.post(format!("{leases}?model=Not%20a%20model")), "not a lease request"),
        (c.client.post(&leases).body("{not json"), "not a lease request"),
        (c.client.post(&leases), "not a lease request"),
    ] {
        let (status, refused) = grant(request).await;
        assert_eq!(status, 400, "{refused}");
        assert!(refused["error"].as_str().unwrap().contains(what), "{refused}");
    }
}

/// A node opens only files under its own artifact folders, whatever a
/// holder of the cluster token asks: a real model outside them is refused,
/// and so is a system file, before anything is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_stages_only_files_under_its_artifact_folders() {
    let c = start(&["a"], &["n1"], 1 << 30).await;
    let outside = tempfile::tempdir().unwrap();
    let stray = outside.path().join("stray.gguf");
    TinyModel::qwen2().write(&stray).unwrap();
    let node = &c.nodes[0].url;
    for artifact in [stray, "/etc/hostname".into(), c.dir.path().join("../escape.gguf")] {
        let spec = ModelSpec::new(ModelName::parse("x").unwrap(), ArtifactUri::File(artifact.clone()));
        let resp = c
            .client
            .post(format!("{node}/internal/v1/models/x/stage"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .json(&spec)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 422, "{}", artifact.display());
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"]["Artifact"].as_str().is_some_and(|m| m.contains("artifact")), "{body}");
    }
    assert!(c.nodes[0].node.model(&ModelName::parse("x").unwrap()).is_none(), "nothing was staged");
    // The model under the folder still serves.
    assert_eq!(c.chat("a").await.0, 200);
}

/// What a new leader does on Kubernetes: the old scheduler is gone, the
/// nodes' heartbeats reach the new one (the Service now points there), and
/// it adopts the model awake on a node's device as serving — no wake, no
/// model lost — from the specs it reads and the nodes' reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_scheduler_adopts_what_the_nodes_hold_without_waking_anything() {
    let mut c = start(&["a", "b"], &["n1"], 1 << 30).await;
    let (code, before) = c.chat("a").await;
    assert_eq!(code, 200, "{before}");
    let old = c.status().await;
    assert_eq!(Cluster::replica_nodes(&old, "a"), ["n1"]);
    let woke = old["models"].as_array().unwrap().iter().find(|m| m["name"] == "a").unwrap();
    assert!(woke["last_wake"].is_object(), "the first scheduler woke it: {woke}");

    // The leader dies; its successor starts from the same specs.
    c.scheduler.abort();
    let (base, scheduler) = start_scheduler(&c.specs, &c.dir.path().join("control-2")).await;
    let n1 = &mut c.nodes[0];
    n1.heartbeat.abort();
    n1.heartbeat = node_server::spawn_heartbeat(
        n1.node.clone(),
        NodeId::parse(&n1.id).unwrap(),
        n1.url.clone(),
        base.clone(),
        n1.device,
        ClusterToken::new(TOKEN).unwrap(),
    );
    c.base = base;
    c.scheduler = scheduler;

    // Before any request: `a` is serving on n1 (adopted), `b` was never awake.
    let status = c.wait_for(|s| !Cluster::replica_nodes(s, "a").is_empty()).await;
    let a = status["models"].as_array().unwrap().iter().find(|m| m["name"] == "a").unwrap();
    assert!(a["last_wake"].is_null(), "adopted, not woken by the new scheduler: {a}");
    assert!(Cluster::replica_nodes(&status, "b").is_empty());
    let (code, after) = c.chat("a").await;
    assert_eq!(code, 200, "{after}");
    assert_eq!(after["choices"], before["choices"], "the same model, still on n1");
    assert_eq!(c.chat("b").await.0, 200, "a model asleep before the failover still wakes");
}
