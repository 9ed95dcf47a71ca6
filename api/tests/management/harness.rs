//! A real server with its management plane on a real database (SQLite in a
//! temp dir, or a fresh PostgreSQL database), over loopback HTTP.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use greenthread_api::http::limits::Limits;
use greenthread_api::{Budgets, ManagedOptions, Platform};
use greenthread_node_runtime::builtin::BuiltinEngine;
use greenthread_node_runtime::fixtures::TinyModel;
use greenthread_node_runtime::node::LocalArtifacts;
use greenthread_scheduler::PreemptionRules;
use greenthread_store::Clock;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};

/// The admin credential every test server accepts.
pub const ADMIN: &str = "test-admin-credential-0123456789abcdef";

/// A clock the test moves.
pub struct TestClock(pub Mutex<DateTime<Utc>>);

impl TestClock {
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap();
        *now += chrono::Duration::from_std(by).unwrap();
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// Which database a test runs on.
pub enum Db {
    Sqlite(tempfile::TempDir),
    Postgres { url: String, name: String, admin_url: String },
}

impl Db {
    pub fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().unwrap())
    }

    /// A new, empty database on the PostgreSQL server of
    /// `GREENTHREAD_TEST_POSTGRES` (default: the local one, trust auth).
    pub async fn postgres() -> Self {
        let admin_url = std::env::var("GREENTHREAD_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("gt_test_{}", uuid::Uuid::now_v7().simple());
        let admin = Database::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {admin_url} is needed for this test (scripts/test.sh starts one): {e}")
        });
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        Self::Postgres { url: format!("{base}/{name}"), name, admin_url }
    }

    pub fn url(&self) -> String {
        match self {
            Self::Sqlite(dir) => greenthread_store::Store::sqlite_url(dir.path()),
            Self::Postgres { url, .. } => url.clone(),
        }
    }

    /// Drops a PostgreSQL test database.
    pub async fn cleanup(self) {
        if let Self::Postgres { name, admin_url, .. } = self {
            let admin = Database::connect(&admin_url).await.unwrap();
            let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        }
    }
}

pub struct Server {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<TestClock>,
    /// Where artifacts of API-created models may live; holds `tiny.gguf`.
    pub artifacts: PathBuf,
    pub state: greenthread_api::state::AppState,
    /// The DNS zone custom domains are verified against.
    pub dns: LocalDns,
    _data: tempfile::TempDir,
}

/// A DNS server on loopback answering TXT queries from a table the test fills.
pub struct LocalDns {
    pub addr: std::net::SocketAddr,
    pub records: Arc<Mutex<std::collections::HashMap<String, Vec<String>>>>,
}

impl LocalDns {
    async fn start() -> Self {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let records: Arc<Mutex<std::collections::HashMap<String, Vec<String>>>> = Arc::default();
        let zone = records.clone();
        tokio::spawn(async move {
            use hickory_proto::op::Message;
            use hickory_proto::rr::rdata::TXT;
            use hickory_proto::rr::{RData, Record};
            let mut buf = [0u8; 4096];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
                let mut response = Message::response(query.metadata.id, query.metadata.op_code);
                response.metadata.recursion_desired = query.metadata.recursion_desired;
                response.metadata.recursion_available = true;
                response.add_queries(query.queries.iter().cloned());
                for question in &query.queries {
                    let name = question.name().to_string();
                    let values = zone.lock().unwrap().get(name.trim_end_matches('.')).cloned().unwrap_or_default();
                    for value in values {
                        let txt = RData::TXT(TXT::new(vec![value]));
                        response.add_answer(Record::from_rdata(question.name().clone(), 60, txt));
                    }
                }
                let _ = socket.send_to(&response.to_vec().unwrap(), from).await;
            }
        });
        Self { addr, records }
    }

    pub fn publish(&self, name: &str, value: &str) {
        self.records.lock().unwrap().entry(name.to_owned()).or_default().push(value.to_owned());
    }
}

/// Writes a tiny real model into `dir` (once) and returns its path. Written
/// beside and renamed into place, so a test running at the same time never
/// reads half a file.
pub fn tiny_model(dir: &Path, name: &str, seed: u64) -> PathBuf {
    let path = dir.join(format!("{name}.gguf"));
    if !path.exists() {
        let partial = dir.join(format!(".{name}.{}.partial", uuid::Uuid::now_v7().simple()));
        TinyModel { seed, ..TinyModel::qwen2() }.write(&partial).unwrap();
        std::fs::rename(&partial, &path).unwrap();
    }
    path
}

/// The artifact folder every test server of this process shares (holding
/// `tiny.gguf`), as servers sharing one database in production share the
/// folder their models' files are in.
pub fn shared_artifacts() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        tiny_model(dir.path(), "tiny", 1);
        dir
    })
    .path()
}

impl Server {
    pub async fn start(db: &Db) -> Self {
        Self::start_in(db, tempfile::tempdir().unwrap(), Arc::new(TestClock(Mutex::new(Utc::now())))).await
    }

    /// A server on `db` with its data in `data` (a restart passes the same both).
    pub async fn start_in(db: &Db, data: tempfile::TempDir, clock: Arc<TestClock>) -> Self {
        let dns = LocalDns::start().await;
        let artifacts = shared_artifacts().to_path_buf();
        let platform = Platform {
            budgets: Budgets { device: 1 << 30, ram: 1 << 30, disk: 1 << 30 },
            engine: BuiltinEngine::cpu().with_max_sequences(4),
            limits: Limits::default(),
            rules: PreemptionRules { min_residency: Duration::ZERO, force_after: Duration::ZERO },
            local_node: true,
            cluster_token: None,
            local_artifacts: LocalArtifacts::within([artifacts.clone()], []),
        };
        let options = ManagedOptions {
            database_url: db.url(),
            open_mode: false,
            artifact_dirs: vec![artifacts.clone()],
            admin_token: Some(ADMIN.into()),
            config: None,
            clock: clock.clone(),
            sync_every: Duration::from_millis(200),
            rate_window: Duration::from_secs(60),
            responses_retention: Duration::from_secs(3600),
            resolver: Arc::new(greenthread_api::domains::HickoryResolver::at(dns.addr).unwrap()),
        };
        let started = greenthread_api::start_managed(&data.path().join("data"), platform, options).await.unwrap();
        let state = started.state;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(greenthread_api::http::serve(listener, greenthread_api::router::router(state.clone())));
        Self { base, client: reqwest::Client::new(), clock, artifacts, state, dns, _data: data }
    }

    /// A gateway of a cluster on `db` (`greenthread gateway`), in front of
    /// the scheduler at `scheduler`, allowing artifacts under `artifacts`.
    pub async fn start_gateway(db: &Db, scheduler: &str, token: &str, artifacts: PathBuf) -> Self {
        let dns = LocalDns::start().await;
        let args = greenthread_api::cli::GatewayArgs {
            scheduler: scheduler.to_owned(),
            cluster_token: token.to_owned(),
            database_url: db.url(),
            listen: "127.0.0.1:0".parse().unwrap(),
            management: greenthread_api::cli::ManagementArgs {
                open: false,
                artifact_dirs: vec![artifacts.clone()],
                rate_window: Duration::from_secs(60),
                responses_retention: Duration::from_secs(3600),
                dns_server: Some(dns.addr),
            },
            max_request_bytes: Limits::default().max_request_bytes,
            wake_timeout: Duration::from_secs(20),
            sync_every: Duration::from_millis(200),
            drain: greenthread_api::cli::DrainArgs { drain_timeout: Duration::from_secs(5) },
        };
        let state = greenthread_api::gateway::start_gateway(&args).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(greenthread_api::http::serve(listener, greenthread_api::router::router(state.clone())));
        let clock = Arc::new(TestClock(Mutex::new(Utc::now())));
        Self { base, client: reqwest::Client::new(), clock, artifacts, state, dns, _data: tempfile::tempdir().unwrap() }
    }

    /// The server's data folder (its node's cache is under `data/cache`).
    pub fn data_dir(&self) -> &Path {
        self._data.path()
    }

    /// Stops serving and hands back what a restart needs.
    pub fn into_parts(self) -> (tempfile::TempDir, Arc<TestClock>) {
        (self._data, self.clock)
    }

    /// One GraphQL request as `token`: the whole response.
    pub async fn gql(&self, token: &str, query: &str, variables: Value) -> Value {
        let resp = self
            .client
            .post(format!("{}/graphql", self.base))
            .bearer_auth(token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap();
        resp.json().await.unwrap()
    }

    /// A GraphQL request that must succeed: its `data`.
    pub async fn ok(&self, token: &str, query: &str, variables: Value) -> Value {
        let answer = self.gql(token, query, variables).await;
        assert!(answer.get("errors").is_none_or(|e| e.as_array().unwrap().is_empty()), "{answer:#}");
        answer["data"].clone()
    }

    /// The `extensions.code` of the first error of a request that must fail.
    pub async fn error_code(&self, token: &str, query: &str, variables: Value) -> String {
        let answer = self.gql(token, query, variables).await;
        answer["errors"][0]["extensions"]["code"].as_str().unwrap_or_else(|| panic!("no error: {answer:#}")).to_owned()
    }

    /// A new key: its secret and id.
    pub async fn key(&self, token: &str, project: &str, scopes: &[&str]) -> (String, String) {
        let data = self
            .ok(
                token,
                "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret apiKey { id } userErrors { message } } }",
                json!({"i": {"project": project, "name": format!("{project} key"), "scopes": scopes}}),
            )
            .await;
        let payload = &data["createApiKey"];
        assert_eq!(payload["userErrors"], json!([]), "{payload}");
        (payload["secret"].as_str().unwrap().to_owned(), payload["apiKey"]["id"].as_str().unwrap().to_owned())
    }

    /// A project (admin) with a model `model` on the tiny artifact.
    pub async fn project_with_model(&self, project: &str, model: &str) {
        let data = self
            .ok(
                ADMIN,
                "mutation($p: CreateProjectInput!, $m: CreateModelInput!) {
                   createProject(input: $p) { userErrors { message } }
                   createModel(input: $m) { model { name } userErrors { field message } }
                 }",
                json!({
                    "p": {"name": project},
                    "m": {"project": project, "name": model, "artifact": self.artifacts.join("tiny.gguf").to_str().unwrap()},
                }),
            )
            .await;
        assert_eq!(data["createProject"]["userErrors"], json!([]), "{data}");
        assert_eq!(data["createModel"]["userErrors"], json!([]), "{data}");
    }

    /// A `/v1` request with `key`: the status and body.
    pub async fn v1(&self, key: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn chat(&self, key: &str, model: &str) -> (u16, Value) {
        let body =
            json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "temperature": 0});
        self.v1(key, reqwest::Method::POST, "/v1/chat/completions", Some(body)).await
    }

    /// Every audit event the admin sees.
    pub async fn audit_count(&self) -> usize {
        let data = self.ok(ADMIN, "{ auditEvents(first: 100) { edges { node { id } } } }", json!({})).await;
        data["auditEvents"]["edges"].as_array().unwrap().len()
    }

    /// Every project name, model name and key id the admin sees.
    pub async fn snapshot(&self) -> Value {
        self.ok(
            ADMIN,
            "{ projects { nodes { name description services { nodes { name description } } } }
               models { nodes { name artifact aliases scaling { minReplicas idleTimeout } service { name } } }
               apiKeys { nodes { id revokedAt } } }",
            json!({}),
        )
        .await
    }
}

/// Runs a test body on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::harness::Db::sqlite();
                super::$name(&db).await;
                db.cleanup().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = $crate::harness::Db::postgres().await;
                super::$name(&db).await;
                db.cleanup().await;
            }
        }
    };
}
