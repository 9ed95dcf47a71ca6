//! What a hostile client tried against the management plane, kept as
//! tests: each of these once crashed the server, outlived a revocation,
//! escaped a scope or a limit, or answered with an internal error.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::{ADMIN, Db, Server};
use crate::on_both_databases;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A `graphql-transport-ws` socket, initialised with `key`.
async fn socket(s: &Server, key: &str) -> Socket {
    let mut request = format!("{}/graphql/ws", s.base.replace("http", "ws")).into_client_request().unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    send(&mut ws, json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {key}")}})).await;
    let ack = next_json(&mut ws).await.expect("an answer to connection_init");
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    ws
}

async fn send(ws: &mut Socket, message: Value) {
    ws.send(Message::Text(message.to_string().into())).await.unwrap();
}

/// The next text message as JSON; `None` once the socket closed.
async fn next_json(ws: &mut Socket) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await.expect("an answer within 20 s") {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            _ => return None,
        }
    }
}

/// The POST /graphql answer to `query` from `key`: status and body.
async fn post(s: &Server, key: &str, body: Value) -> (u16, Value) {
    let resp = s.client.post(format!("{}/graphql", s.base)).bearer_auth(key).json(&body).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

fn code(answer: &Value) -> &str {
    answer["errors"][0]["extensions"]["code"].as_str().unwrap_or_else(|| panic!("no error code: {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_documents_are_refused_and_the_server_lives() {
    let db = Db::sqlite();
    let s = Server::start(&db).await;
    let deep = 2000;
    let documents = [
        format!("{{model(name:{}\"x\"{}){{name}}}}", "[".repeat(deep), "]".repeat(deep)),
        format!("{{model(name:{}\"x\"{}){{name}}}}", "{a:".repeat(deep), "}".repeat(deep)),
        format!("query($v:String={}\"x\"{}){{model(name:$v){{name}}}}", "[".repeat(deep), "]".repeat(deep)),
        format!("{}{}", "{a".repeat(deep), "}".repeat(deep)),
    ];
    for document in &documents {
        // No key at all: anyone could send this.
        let resp = s.client.post(format!("{}/graphql", s.base)).json(&json!({"query": document})).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(code(&answer), "BAD_REQUEST", "{answer}");
    }
    let mut ws = socket(&s, ADMIN).await;
    send(&mut ws, json!({"id": "1", "type": "subscribe", "payload": {"query": documents[0]}})).await;
    let answer = next_json(&mut ws).await.expect("an answer on the socket");
    assert_eq!(answer["payload"]["errors"][0]["extensions"]["code"], "BAD_REQUEST", "{answer}");
    assert_eq!(
        s.ok(ADMIN, "{ viewer { keyName } }", json!({})).await["viewer"]["keyName"],
        "admin from GREENTHREAD_ADMIN_TOKEN"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_loses_its_open_websocket() {
    let db = Db::sqlite();
    let s = Server::start(&db).await;
    s.project_with_model("team", "team-model").await;
    let (manager, id) = s.key(ADMIN, "team", &["read", "manage"]).await;
    let mut ws = socket(&s, &manager).await;
    send(
        &mut ws,
        json!({"id": "events", "type": "subscribe", "payload": {"query": "subscription { modelEvents { model } }"}}),
    )
    .await;
    let create = |id: &str, name: &str| {
        json!({"id": id, "type": "subscribe", "payload": {
            "query": "mutation($i: CreateServiceInput!) { createService(input: $i) { service { name } } }",
            "variables": {"i": {"project": "team", "name": name}}}})
    };
    send(&mut ws, create("before", "before")).await;
    // The model's staging may send events first.
    let mut answer = next_json(&mut ws).await.unwrap();
    while answer["id"] == "events" {
        answer = next_json(&mut ws).await.unwrap();
    }
    assert_eq!(answer["payload"]["data"]["createService"]["service"]["name"], "before", "{answer}");

    let revoked = s
        .ok(
            ADMIN,
            "mutation($i: RevokeApiKeyInput!) { revokeApiKey(input: $i) { apiKey { revokedAt } } }",
            json!({"i": {"id": id}}),
        )
        .await;
    assert!(revoked["revokeApiKey"]["apiKey"]["revokedAt"].is_string());
    // The socket may take one more operation before its next check closes
    // it, but that operation is checked against the key too.
    send(&mut ws, create("after", "after")).await;
    let mut closed_with = None;
    while let Some(message) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("closed within 5 s")
    {
        match message {
            Ok(Message::Text(t)) => {
                let answer: Value = serde_json::from_str(&t).unwrap();
                if answer["type"] == "next" && answer["id"] == "after" {
                    assert!(answer["payload"]["data"].is_null(), "nothing runs after the revocation: {answer}");
                    assert_eq!(answer["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{answer}");
                }
            }
            Ok(Message::Close(frame)) => {
                closed_with = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                break;
            }
            _ => break,
        }
    }
    let (code, reason) = closed_with.expect("a close frame");
    assert_eq!(code, 4403);
    assert!(reason.contains("revoked"), "{reason}");
    let services = s.ok(ADMIN, "{ project(name: \"team\") { services { nodes { name } } } }", json!({})).await;
    let names: Vec<&str> = services["project"]["services"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"after"), "{names:?}");
}

async fn revoke(s: &Server, key: &str, id: &str, replacement: Option<&str>) -> Value {
    let mut input = json!({"id": id});
    if let Some(name) = replacement {
        input["replacement"] = json!({"name": name});
    }
    s.gql(
        key,
        "mutation($i: RevokeApiKeyInput!) { revokeApiKey(input: $i) {
           apiKey { id revokedAt } replacement { secret apiKey { id scopes } } userErrors { field code } } }",
        json!({"i": input}),
    )
    .await
}

async fn admin_key_rules(db: &Db) {
    let s = Server::start(db).await;
    let (manager, _) = s.key(ADMIN, "default", &["read", "manage"]).await;
    let admins = s.ok(ADMIN, "{ apiKeys { nodes { id scopes } } }", json!({})).await;
    let bootstrap = admins["apiKeys"]["nodes"][0]["id"].as_str().unwrap().to_owned();

    let answer = revoke(&s, &manager, &bootstrap, None).await;
    assert_eq!(code(&answer), "FORBIDDEN", "a manage key may not revoke an admin key: {answer}");

    let answer = revoke(&s, ADMIN, &bootstrap, None).await;
    assert_eq!(answer["data"]["revokeApiKey"]["userErrors"][0]["code"], "LAST_ADMIN_KEY", "{answer}");
    assert_eq!(
        s.ok(ADMIN, "{ viewer { keyName } }", json!({})).await["viewer"]["keyName"],
        "admin from GREENTHREAD_ADMIN_TOKEN"
    );

    let answer = revoke(&s, ADMIN, &bootstrap, Some("rotated admin")).await;
    let payload = &answer["data"]["revokeApiKey"];
    assert_eq!(payload["userErrors"], json!([]), "{answer}");
    let secret = payload["replacement"]["secret"].as_str().unwrap().to_owned();
    assert_eq!(payload["replacement"]["apiKey"]["scopes"], json!(["read", "manage", "admin"]));
    assert_eq!(s.error_code(ADMIN, "{ viewer { keyName } }", json!({})).await, "UNAUTHENTICATED");
    assert_eq!(s.ok(&secret, "{ viewer { keyName } }", json!({})).await["viewer"]["keyName"], "rotated admin");
}
on_both_databases!(admin_key_rules);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliased_mutations_are_capped_and_each_counts_against_the_rate_limit() {
    let db = Db::sqlite();
    let s = Server::start(&db).await;
    let aliases = |n: usize, from: usize| {
        let fields: String = (from..from + n)
            .map(|i| {
                format!(
                    "s{i}: createService(input: {{project: \"default\", name: \"svc-{i}\"}}) {{ service {{ name }} }} "
                )
            })
            .collect();
        json!({"query": format!("mutation {{ {fields} }}")})
    };
    let (status, answer) = post(&s, ADMIN, aliases(200, 0)).await;
    assert_eq!((status, code(&answer)), (400, "BAD_REQUEST"), "{answer}");
    // One fragment of two fields, spread fifty times, runs a hundred.
    let spread = json!({"query": format!(
        "mutation {{ {} }} fragment F on MutationRoot {{ a: createService(input: {{project: \"default\", name: \"f-a\"}}) {{ service {{ name }} }} b: createService(input: {{project: \"default\", name: \"f-b\"}}) {{ service {{ name }} }} }}",
        "...F ".repeat(50))});
    let (status, answer) = post(&s, ADMIN, spread).await;
    assert_eq!((status, code(&answer)), (400, "BAD_REQUEST"), "{answer}");
    let services = s.ok(ADMIN, "{ project(name: \"default\") { services { nodes { name } } } }", json!({})).await;
    assert_eq!(services["project"]["services"]["nodes"].as_array().unwrap().len(), 1, "none of the 200 ran");

    // A burst of 100 tokens: five requests of 20 fields use it up, the sixth is refused.
    for round in 0..5 {
        let (status, answer) = post(&s, ADMIN, aliases(20, round * 20)).await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, answer) = post(&s, ADMIN, aliases(20, 100)).await;
    assert_eq!((status, code(&answer)), (429, "RATE_LIMITED"), "{answer}");
}

async fn storage_limits_and_nul_are_refused_as_user_input(db: &Db) {
    let s = Server::start(db).await;
    let long = "p".repeat(64);
    let answer = s
        .ok(
            ADMIN,
            "mutation($i: CreateProjectInput!) { createProject(input: $i) { userErrors { field code } } }",
            json!({"i": {"name": long}}),
        )
        .await;
    assert_eq!(answer["createProject"]["userErrors"][0]["field"], "input.name", "{answer}");
    let fits = "p".repeat(63);
    let answer = s
        .ok(
            ADMIN,
            "mutation($i: CreateProjectInput!) { createProject(input: $i) { project { name } userErrors { code } } }",
            json!({"i": {"name": fits}}),
        )
        .await;
    assert_eq!(answer["createProject"]["project"]["name"], fits, "{answer}");

    let nul = "a\u{0}b";
    let probes = [
        (
            "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret } }",
            json!({"i": {"project": "default", "name": nul, "scopes": ["read"]}}),
        ),
        (
            "mutation($i: CreateProjectInput!) { createProject(input: $i) { project { name } } }",
            json!({"i": {"name": "nul", "description": nul}}),
        ),
        (
            "mutation($i: CreateModelInput!) { createModel(input: $i) { model { name } } }",
            json!({"i": {"project": "default", "name": "nul", "artifact": s.artifacts.join("tiny.gguf"), "chatTemplate": nul}}),
        ),
        (
            "mutation($d: JSON!, $k: String) { apply(desired: $d, baseEtag: \"x\", idempotencyKey: $k) { applied } }",
            json!({"d": {"projects": []}, "k": nul}),
        ),
        ("query($a: String) { auditEvents(filter: {action: $a}) { nodes { id } } }", json!({"a": nul})),
    ];
    for (query, variables) in probes {
        let (status, answer) = post(&s, ADMIN, json!({"query": query, "variables": variables})).await;
        assert_eq!((status, code(&answer)), (400, "BAD_USER_INPUT"), "{query}: {answer}");
    }
    // Written into the document rather than passed as a variable.
    let (status, answer) =
        post(&s, ADMIN, json!({"query": "mutation { createProject(input: {name: \"x\", description: \"a\\u0000b\"}) { project { name } } }"})).await;
    assert_eq!((status, code(&answer)), (400, "BAD_USER_INPUT"), "{answer}");
    let projects = s.ok(ADMIN, "{ projects { nodes { name } } }", json!({})).await;
    assert_eq!(projects["projects"]["nodes"].as_array().unwrap().len(), 2, "default and the 63-byte one: {projects}");
}
on_both_databases!(storage_limits_and_nul_are_refused_as_user_input);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_errors_come_back_as_graphql_json() {
    let db = Db::sqlite();
    let s = Server::start(&db).await;
    let batch = json!([{"query": "{ viewer { keyName } }"}, {"query": "{ viewer { keyName } }"}]);
    let (status, answer) = post(&s, ADMIN, batch).await;
    assert_eq!((status, code(&answer)), (400, "BAD_REQUEST"), "{answer}");
    assert!(answer["errors"][0]["message"].as_str().unwrap().contains("batched"), "{answer}");
    let resp = s
        .client
        .post(format!("{}/graphql", s.base))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body("{1: 2}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let answer: Value = resp.json().await.expect("GraphQL JSON, not debug text");
    assert_eq!(code(&answer), "BAD_REQUEST", "{answer}");
    assert!(!answer.to_string().contains("InvalidRequest("), "{answer}");

    let (inference, _) = s.key(ADMIN, "default", &["inference"]).await;
    let answer = s
        .gql(
            &inference,
            "mutation($i: CreateServiceInput!) { createService(input: $i) { service { name } } }",
            json!({"i": {"project": "default", "name": "x"}}),
        )
        .await;
    assert_eq!(code(&answer), "FORBIDDEN", "its own project: nothing to hide: {answer}");
    let answer = s.gql(&inference, "{ project(name: \"default\") { name } }", json!({})).await;
    assert_eq!(code(&answer), "FORBIDDEN", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_metrics_need_a_key_and_show_only_its_project() {
    let db = Db::sqlite();
    let s = Server::start(&db).await;
    s.project_with_model("mine", "my-model").await;
    s.project_with_model("theirs", "their-model").await;
    let (reader, _) = s.key(ADMIN, "mine", &["read"]).await;
    let get = |path: &'static str, key: Option<String>| {
        let mut req = s.client.get(format!("{}{path}", s.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    assert_eq!(get("/status", None).await.0, 401);
    assert_eq!(get("/metrics", None).await.0, 401);
    let (status, body) = get("/status", Some(reader.clone())).await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = body["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["my-model"], "{body}");
    assert!(body.get("nodes").is_none() && body.get("tiers").is_none(), "nodes are for admins: {body}");
    assert_eq!(get("/metrics", Some(reader)).await.0, 403);
    let (status, body) = get("/status", Some(ADMIN.into())).await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["models"].as_array().unwrap().len(), 2);
    assert!(body["nodes"].is_array());
    let (status, metrics) = get("/metrics", Some(ADMIN.into())).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("greenthread_"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg(unix)]
async fn a_link_swapped_in_after_creation_is_not_followed_out_of_the_artifact_folder() {
    let db = Db::sqlite();
    let s = Server::start(&db).await;
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "root:x:0:0:SECRET-CONTENT\n").unwrap();
    let later = s.artifacts.join("later.gguf");
    let created = s
        .ok(
            ADMIN,
            "mutation($i: CreateModelInput!) { createModel(input: $i) { model { name } userErrors { message } } }",
            json!({"i": {"project": "default", "name": "swapped", "artifact": later, "scaling": {"minReplicas": 0}}}),
        )
        .await;
    assert_eq!(
        created["createModel"]["userErrors"],
        json!([]),
        "a file that does not exist yet is accepted: {created}"
    );
    let state = || async {
        let status: Value =
            s.client.get(format!("{}/status", s.base)).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
        status["models"].as_array().unwrap().iter().find(|m| m["name"] == "swapped").cloned().unwrap_or(Value::Null)
    };
    // Its first staging finds no file; then the link appears.
    while state().await["state"] != "failed" {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::os::unix::fs::symlink(&secret, &later).unwrap();
    let answer = s
        .gql(
            ADMIN,
            "mutation { wakeModel(input: {name: \"swapped\"}) { model { name } userErrors { message } } }",
            json!({}),
        )
        .await;
    let text = answer.to_string();
    assert!(!text.contains("SECRET") && !text.contains("root:x"), "no file content in errors: {text}");
    assert!(text.contains("outside"), "the wake is refused because the file leads outside: {text}");
    let model = state().await;
    assert_eq!(model["state"], "failed", "{model}");
    let error = model["error"].as_str().unwrap();
    assert!(error.contains("outside"), "{error}");
    assert!(!error.contains(&outside.path().display().to_string()) && !error.contains("SECRET"), "{error}");
    for file in std::fs::read_dir(s.data_dir().join("data/cache")).unwrap() {
        let contents = std::fs::read(file.unwrap().path()).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&contents).contains("SECRET"), "the secret was copied into the cache");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_credentials_in_an_artifact_are_refused() {
    let db = Db::sqlite();
    let s = Server::start(&db).await;
    let answer = s
        .ok(
            ADMIN,
            "mutation($i: CreateModelInput!) { createModel(input: $i) { model { name } userErrors { field message } } }",
            json!({"i": {"project": "default", "name": "creds", "artifact": "s3://AKIA:hunter2@bucket/m.gguf"}}),
        )
        .await;
    let errors = &answer["createModel"]["userErrors"];
    assert_eq!(errors[0]["field"], "input.artifact", "{answer}");
    assert!(!errors.to_string().contains("hunter2"), "{errors}");
}

const PLAN: &str =
    "mutation($d: JSON!) { plan(desired: $d) { changes { address } userErrors { field code message } } }";
const SET_PREFIXES: &str = "mutation($i: SetArtifactPrefixesInput!) { setArtifactPrefixes(input: $i) {
    project { artifactPrefixes } userErrors { field code } } }";

async fn object_store_prefixes_bound_what_a_manage_key_may_read(db: &Db) {
    let s = Server::start(db).await;
    s.ok(ADMIN, "mutation { createProject(input: {name: \"team\"}) { userErrors { code } } }", json!({})).await;
    let (manager, _) = s.key(ADMIN, "team", &["read", "manage"]).await;
    let doc = |artifact: &str| json!({"projects": [{"name": "team"}], "models": [{"name": "team-model", "project": "team", "artifact": artifact}]});
    let plan = |key: String, artifact: &'static str| {
        let d = doc(artifact);
        let s = &s;
        async move { s.ok(&key, PLAN, json!({"d": d})).await["plan"].clone() }
    };
    let refused = plan(manager.clone(), "s3://models/team/qwen.gguf").await;
    assert_eq!(refused["userErrors"][0]["code"], "FORBIDDEN_ARTIFACT", "no prefix is allowed yet: {refused}");
    let admin = plan(ADMIN.to_owned(), "s3://models/team/qwen.gguf").await;
    assert_eq!(admin["userErrors"], json!([]), "an admin may name any object: {admin}");

    let answer =
        s.gql(&manager, SET_PREFIXES, json!({"i": {"project": "team", "prefixes": ["s3://models/team"]}})).await;
    assert_eq!(code(&answer), "FORBIDDEN", "only admins set prefixes: {answer}");
    let bad = s.ok(ADMIN, SET_PREFIXES, json!({"i": {"project": "team", "prefixes": ["s3://u:p@models/x"]}})).await;
    assert_eq!(bad["setArtifactPrefixes"]["userErrors"][0]["field"], "input.prefixes[0]", "{bad}");
    let set = s.ok(ADMIN, SET_PREFIXES, json!({"i": {"project": "team", "prefixes": ["s3://models/team"]}})).await;
    assert_eq!(set["setArtifactPrefixes"]["project"]["artifactPrefixes"], json!(["s3://models/team/"]), "{set}");

    let allowed = plan(manager.clone(), "s3://models/team/qwen.gguf").await;
    assert_eq!(allowed["userErrors"], json!([]), "{allowed}");
    let outside = plan(manager.clone(), "s3://models/team-b/qwen.gguf").await;
    assert_eq!(outside["userErrors"][0]["code"], "FORBIDDEN_ARTIFACT", "whole segments only: {outside}");
    let escaped = plan(manager.clone(), "s3://models/team/%2e%2e/team-b/qwen.gguf").await;
    assert!(escaped["changes"].as_array().is_none_or(|c| c.is_empty()), "no escape through dot segments: {escaped}");
    assert!(!escaped["userErrors"].as_array().unwrap().is_empty(), "{escaped}");
    let audit = s
        .ok(
            ADMIN,
            "{ auditEvents(filter: {action: \"project.artifact_prefixes\"}) { nodes { objectName } } }",
            json!({}),
        )
        .await;
    assert_eq!(audit["auditEvents"]["nodes"], json!([{"objectName": "team"}]));
}
on_both_databases!(object_store_prefixes_bound_what_a_manage_key_may_read);
