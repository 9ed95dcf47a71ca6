//! A cluster's API tier: a gateway (`greenthread gateway`) in front of a
//! scheduler with no node of its own and one node, all on real loopback
//! HTTP and one real database. The gateway serves keys, GraphQL and the
//! OpenAI API from the database, leases replicas from the scheduler and
//! streams from the node; it waits out a scheduler restart.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use greenthread_api::cluster::NodeLink;
use greenthread_api::cluster::token::ClusterToken;
use greenthread_api::http::limits::Limits;
use greenthread_api::manage::ArtifactPolicy;
use greenthread_api::node_server;
use greenthread_api::scheduler_link::RemoteScheduler;
use greenthread_api::{Budgets, ManagedOptions, Platform};
use greenthread_core::{ModelName, ModelState, NodeId};
use greenthread_node_runtime::builtin::BuiltinEngine;
use greenthread_node_runtime::node::{LocalArtifacts, LocalNode, NodeConfig, TierBudgets};
use greenthread_scheduler::PreemptionRules;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::harness::{ADMIN, Db, Server, TestClock, tiny_model};
use crate::on_both_databases;

const TOKEN: &str = "test-cluster-token-0123456789";

/// A scheduler on `db` listening on `addr` (port 0: any), its models from
/// the database; dropping the sender stops it like a killed process (its
/// connections close).
async fn start_scheduler(db: &Db, data: &Path, artifacts: &Path, addr: SocketAddr) -> (String, watch::Sender<()>) {
    let platform = Platform {
        budgets: Budgets { device: 0, ram: 0, disk: 0 },
        engine: BuiltinEngine::cpu(),
        limits: Limits { wake_timeout: Duration::from_secs(20), ..Limits::default() },
        rules: PreemptionRules { min_residency: Duration::ZERO, force_after: Duration::ZERO },
        local_node: false,
        cluster_token: Some(ClusterToken::new(TOKEN).unwrap()),
        local_artifacts: LocalArtifacts::Anywhere,
    };
    let options = ManagedOptions {
        database_url: db.url(),
        open_mode: false,
        artifact_dirs: vec![artifacts.to_path_buf()],
        admin_token: Some(ADMIN.into()),
        config: None,
        clock: Arc::new(TestClock(Mutex::new(Utc::now()))),
        // Only at start and on demand: a model created through the gateway
        // must be servable at once, not after a periodic read.
        sync_every: Duration::from_secs(3600),
        rate_window: Duration::from_secs(60),
        responses_retention: Duration::from_secs(3600),
        resolver: Arc::new(greenthread_api::domains::HickoryResolver::at(([127, 0, 0, 1], 9).into()).unwrap()),
    };
    let state = greenthread_api::start_managed(data, platform, options).await.unwrap().state;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, mut stopped) = watch::channel(());
    let server = axum::serve(listener, greenthread_api::router::router(state))
        .with_graceful_shutdown(async move { while stopped.changed().await.is_ok() {} });
    let task = tokio::spawn(server.into_future());
    let (abort, mut dropped) = watch::channel(());
    // Gone: stop taking connections, close the idle ones, drop the rest.
    tokio::spawn(async move {
        while dropped.changed().await.is_ok() {}
        drop(stop);
        tokio::time::sleep(Duration::from_millis(200)).await;
        task.abort();
    });
    (base, abort)
}

/// A node process joining the scheduler at `control`.
async fn start_node(dir: &Path, control: &str) {
    let config = NodeConfig {
        cache_dir: dir.join("node-cache"),
        budgets: TierBudgets { ram: 1 << 30, disk: 1 << 30 },
        engine: BuiltinEngine::cpu().with_max_sequences(4),
        local_artifacts: LocalArtifacts::within([dir.to_path_buf()], []),
    };
    let node = LocalNode::new(config, &[]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let token = ClusterToken::new(TOKEN).unwrap();
    let router =
        node_server::router(node.clone(), token.clone(), Limits::default(), ArtifactPolicy::new([dir.to_path_buf()]));
    tokio::spawn(async move { axum::serve(listener, router).await });
    node_server::spawn_heartbeat(node, NodeId::parse("n1").unwrap(), url, control.to_owned(), 1 << 30, token);
}

async fn scheduler_model(client: &reqwest::Client, scheduler: &str, model: &str) -> Value {
    let status: Value =
        client.get(format!("{scheduler}/status")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    status["models"].as_array().unwrap().iter().find(|m| m["name"] == model).cloned().unwrap_or(Value::Null)
}

/// Polls the scheduler until `model` satisfies `ready`.
async fn wait_for(client: &reqwest::Client, scheduler: &str, model: &str, ready: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let m = scheduler_model(client, scheduler, model).await;
        if ready(&m) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{model} never got there: {}", scheduler_model(client, scheduler, model).await);
}

/// A scheduler, its node and a gateway on `db`, with model `m` of project
/// `p` just created through the gateway (the scheduler reads its database
/// only at start and when asked for a model it does not know).
struct Tier {
    gw: Server,
    scheduler: String,
    client: reqwest::Client,
    _running: watch::Sender<()>,
    dir: tempfile::TempDir,
}

impl Tier {
    async fn start(db: &Db) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let artifacts = dir.path().join("artifacts");
        std::fs::create_dir_all(&artifacts).unwrap();
        tiny_model(&artifacts, "tiny", 1);
        let any_port = "127.0.0.1:0".parse().unwrap();
        let (scheduler, running) = start_scheduler(db, &dir.path().join("control"), &artifacts, any_port).await;
        start_node(dir.path(), &scheduler).await;
        let gw = Server::start_gateway(db, &scheduler, TOKEN, artifacts).await;
        gw.project_with_model("p", "m").await;
        Self { gw, scheduler, client: reqwest::Client::new(), _running: running, dir }
    }
}

async fn gateway_serves_from_the_scheduler_and_its_node(db: &Db) {
    // Created through the gateway's GraphQL; the scheduler picks it up from the database.
    let Tier { gw, scheduler, client, _running, dir: _dir } = Tier::start(db).await;
    let (key, key_id) = gw.key(ADMIN, "p", &["inference"]).await;
    assert!(scheduler_model(&client, &scheduler, "m").await.is_null(), "not read by the scheduler yet");

    let (status, body) = gw.chat(&key, "m").await;
    assert_eq!(status, 200, "{body}");
    assert!(!body["choices"][0]["message"]["content"].as_str().unwrap().is_empty(), "{body}");
    let served = scheduler_model(&client, &scheduler, "m").await;
    assert_eq!(served["state"], "serving", "{served}");
    assert_eq!(served["replica_list"][0]["node"], "n1", "{served}");
    // The lease ends with the response: the replica is idle again at once.
    wait_for(&client, &scheduler, "m", |m| m["requests_in_flight"] == 0).await;

    // A stream passes through the gateway from the node.
    let resp = gw
        .client
        .post(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth(&key)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-greenthread-wake-wait-ms"));
    let text = resp.text().await.unwrap();
    assert!(text.contains("chat.completion.chunk") && text.trim_end().ends_with("data: [DONE]"), "{text}");

    // Anthropic's Messages reach the node as sent; it builds the answer, whole and streamed.
    let messages = |stream: bool| {
        gw.client.post(format!("{}/v1/messages", gw.base)).header("x-api-key", &key).json(
            &json!({"model": "m", "max_tokens": 4, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}),
        )
    };
    let whole: Value = messages(false).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (whole["type"].as_str(), whole["content"][0]["type"].as_str()),
        (Some("message"), Some("text")),
        "{whole}"
    );
    assert!(whole["usage"]["input_tokens"].as_u64() > Some(0), "{whole}");
    let streamed = messages(true).send().await.unwrap().text().await.unwrap();
    assert!(streamed.starts_with("event: message_start") && streamed.contains("event: message_stop"), "{streamed}");

    // Bad input is refused at the gateway with the OpenAI shape; unknown models too.
    let (status, body) = gw.chat(&key, "nope").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("model_not_found")), "{body}");
    let (status, _) = gw.chat("not-a-key", "m").await;
    assert_eq!(status, 401);

    // GraphQL at the gateway shows the leader's state, and acts through it.
    let data = gw.ok(ADMIN, "{ models { nodes { name runtime { state replicas } } } nodes { id } }", json!({})).await;
    assert_eq!(data["models"]["nodes"][0]["runtime"], json!({"state": "serving", "replicas": 1}), "{data}");
    assert_eq!(data["nodes"], json!([{"id": "n1"}]));
    let data = gw
        .ok(ADMIN, "mutation { sleepModel(input: {name: \"m\"}) { sleepingReplicas userErrors { code } } }", json!({}))
        .await;
    assert_eq!(data["sleepModel"], json!({"sleepingReplicas": 1, "userErrors": []}), "{data}");
    wait_for(&client, &scheduler, "m", |m| m["state"] == "sleeping").await;
    let data = gw.ok(ADMIN, "mutation { wakeModel(input: {name: \"m\"}) { userErrors { code } } }", json!({})).await;
    assert_eq!(data["wakeModel"]["userErrors"], json!([]), "{data}");
    assert_eq!(scheduler_model(&client, &scheduler, "m").await["state"], "serving");
    wait_for(&client, &scheduler, "m", |m| m["requests_in_flight"] == 0).await;
    let (status, body) = gw.v1(ADMIN, reqwest::Method::GET, "/status", None).await;
    assert_eq!((status, body["models"][0]["state"].as_str()), (200, Some("serving")), "{body}");

    // The gateway metered what it served.
    gw.state.usage_meter().unwrap().flush().await;
    let store = &gw.state.management.as_ref().unwrap().store;
    let rows = greenthread_store::entities::usage_record::Entity::find().all(store.db()).await.unwrap();
    let ok: Vec<_> = rows.iter().filter(|r| r.status == "ok").collect();
    assert_eq!(ok.len(), 4, "two chat and two Messages answers: {rows:#?}");
    // Read from the answers' text, the only place a gateway has a node's counts (OpenAI's and Anthropic's names).
    assert!(
        ok.iter().all(|r| r.key_id.map(|k| k.to_string()) == Some(key_id.clone())
            && r.input_tokens > 0
            && r.output_tokens > 0),
        "{rows:#?}"
    );
}
on_both_databases!(gateway_serves_from_the_scheduler_and_its_node);

async fn gateway_waits_out_a_scheduler_restart(db: &Db) {
    let Tier { gw, scheduler, client, _running: running, dir } = Tier::start(db).await;
    let (key, _) = gw.key(ADMIN, "p", &["inference"]).await;
    assert_eq!(gw.chat(&key, "m").await.0, 200);

    // The scheduler goes away; a request arrives while there is none.
    drop(running);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(client.get(format!("{scheduler}/health")).send().await.is_err(), "the old scheduler still answers");
    let pending = tokio::spawn({
        let (client, base, key) = (gw.client.clone(), gw.base.clone(), key.clone());
        async move {
            let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3});
            let resp = client.post(format!("{base}/v1/chat/completions")).bearer_auth(&key).json(&body).send().await;
            let resp = resp.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    });
    // Meanwhile the gateway's management plane answers from the database.
    let data =
        gw.ok(ADMIN, "{ apiKeys { nodes { id } } models { nodes { name runtime { state } } } }", json!({})).await;
    assert_eq!(data["models"]["nodes"][0]["runtime"], Value::Null, "no leader, no runtime state: {data}");
    assert!(!pending.is_finished(), "the request waits for a leader rather than failing");

    // A new scheduler takes the address over (as a new leader takes the Service).
    let addr: SocketAddr = scheduler.trim_start_matches("http://").parse().unwrap();
    let (again, _running) = start_scheduler(db, &dir.path().join("control-2"), &gw.artifacts, addr).await;
    assert_eq!(again, scheduler);
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), pending).await.unwrap().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body["choices"][0]["message"]["content"].is_string(), "{body}");
}
on_both_databases!(gateway_waits_out_a_scheduler_restart);

/// The lease protocol itself: a gateway that vanishes mid-request
/// releases its replica, and state changes reach a remote subscriber.
async fn remote_leases_end_with_their_connection(db: &Db) {
    let Tier { scheduler, client, _running, dir: _dir, .. } = Tier::start(db).await;

    let remote = Arc::new(RemoteScheduler::new(
        scheduler.clone(),
        NodeLink { client: reqwest::Client::new(), token: ClusterToken::new(TOKEN).unwrap() },
        Duration::from_secs(5),
    ));
    // A subscriber from the start; it is connected long before the sleep below.
    let (seen, mut events) = tokio::sync::mpsc::unbounded_channel();
    let mut stream = remote.clone().events();
    tokio::spawn(async move {
        while let Some(e) = stream.next().await {
            let _ = seen.send(e);
        }
    });
    let model = ModelName::parse("m").unwrap();
    let (grant, lease) = remote.lease(&model, &[], Some("req-lease-1")).await.unwrap();
    assert_eq!(grant.node.as_str(), "n1");
    let held = wait_for(&client, &scheduler, "m", |m| m["requests_in_flight"] == 1).await;
    assert_eq!(held["state"], "serving");
    // Held while the stream is open, across several keep-alives.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(scheduler_model(&client, &scheduler, "m").await["requests_in_flight"], 1);
    // Leases share one HTTP/2 connection: each is released when its own stream closes.
    let (_, second) = remote.lease(&model, &[], None).await.unwrap();
    wait_for(&client, &scheduler, "m", |m| m["requests_in_flight"] == 2).await;
    drop(lease);
    wait_for(&client, &scheduler, "m", |m| m["requests_in_flight"] == 1).await;
    drop(second);
    wait_for(&client, &scheduler, "m", |m| m["requests_in_flight"] == 0).await;

    // An operator's sleep through the link, seen on the event stream.
    let outcome = remote.sleep(&model).await.unwrap();
    assert_eq!(outcome.sleeping, 1, "{outcome:?}");
    let slept = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = events.recv().await {
            if matches!(e.to, ModelState::Sleeping { .. }) {
                return e;
            }
        }
        panic!("the event stream ended");
    })
    .await
    .unwrap();
    assert_eq!((slept.model.as_str(), slept.node.as_str(), slept.cause.as_str()), ("m", "n1", "operator"));

    // A model the scheduler does not have is refused with the reason, not retried.
    let unknown = ModelName::parse("nope").unwrap();
    let err = remote.lease(&unknown, &[], None).await.err().unwrap();
    assert!(matches!(err, greenthread_api::scheduler_link::LinkError::Refused(_)), "{err}");
    // A wrong token gets nothing.
    let stranger = RemoteScheduler::new(
        scheduler.clone(),
        NodeLink { client: reqwest::Client::new(), token: ClusterToken::new("another-token-0123456789abc").unwrap() },
        Duration::from_secs(1),
    );
    let err = stranger.lease(&model, &[], None).await.err().unwrap();
    assert!(matches!(err, greenthread_api::scheduler_link::LinkError::WrongToken), "{err}");
    assert_eq!(scheduler_model(&client, &scheduler, "m").await["requests_in_flight"], 0);
}
on_both_databases!(remote_leases_end_with_their_connection);

/// The Responses API through a gateway: the gateway keeps each response as
/// it passes and expands a continuation into the whole conversation, which
/// the node (with no database) runs as sent.
async fn gateway_keeps_responses_and_the_node_runs_continuations(db: &Db) {
    let Tier { gw, scheduler: _s, client: _c, _running, dir: _dir } = Tier::start(db).await;
    let (key, _) = gw.key(ADMIN, "p", &["inference"]).await;
    let create = |body: Value| gw.v1(&key, reqwest::Method::POST, "/v1/responses", Some(body));
    let (status, first) = create(json!({"model": "m", "input": "hi", "max_output_tokens": 4})).await;
    assert_eq!(status, 200, "{first}");
    let id = first["id"].as_str().unwrap();
    let (status, kept) = gw.v1(&key, reqwest::Method::GET, &format!("/v1/responses/{id}"), None).await;
    assert_eq!((status, &kept), (200, &first));

    let (status, second) =
        create(json!({"model": "m", "input": "again", "previous_response_id": id, "max_output_tokens": 4})).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["previous_response_id"], id);
    let grown = second["usage"]["input_tokens"].as_u64().unwrap();
    assert!(grown > first["usage"]["input_tokens"].as_u64().unwrap() + 2, "{first} {second}");
    let second_id = second["id"].as_str().unwrap();
    let (_, items) =
        gw.v1(&key, reqwest::Method::GET, &format!("/v1/responses/{second_id}/input_items?order=asc"), None).await;
    let roles: Vec<&str> = items["data"].as_array().unwrap().iter().map(|i| i["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "user"], "{items}");

    // A streamed answer is kept by the time its last event has passed the gateway.
    let streamed = gw
        .client
        .post(format!("{}/v1/responses", gw.base))
        .bearer_auth(&key)
        .json(&json!({"model": "m", "input": "hi", "max_output_tokens": 4, "stream": true}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let last = streamed
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .next_back()
        .unwrap();
    assert!(matches!(last["type"].as_str(), Some("response.completed" | "response.incomplete")), "{streamed}");
    let streamed_id = last["response"]["id"].as_str().unwrap();
    let (status, kept) = gw.v1(&key, reqwest::Method::GET, &format!("/v1/responses/{streamed_id}"), None).await;
    assert_eq!((status, &kept["output"]), (200, &last["response"]["output"]));
}
on_both_databases!(gateway_keeps_responses_and_the_node_runs_continuations);
