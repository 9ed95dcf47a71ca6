//! plan → apply → plan; stale etags; idempotency keys; a restart shows no drift.

use serde_json::{Value, json};

use crate::harness::{ADMIN, Db, Server};
use crate::on_both_databases;

const PLAN: &str = "mutation($d: JSON!) { plan(desired: $d) {
    changes { action kind address destructive fields { field before after } } etag userErrors { field message code } } }";
const APPLY: &str =
    "mutation($d: JSON!, $e: String!, $k: String) { apply(desired: $d, baseEtag: $e, idempotencyKey: $k) {
    applied changes { action address } etag userErrors { field message code } } }";

fn doc(s: &Server, idle: &str) -> Value {
    let tiny = s.artifacts.join("tiny.gguf");
    json!({
        "projects": [{"name": "shop", "description": "The shop's models"}],
        "services": [{"project": "shop", "name": "chat"}],
        "models": [
            {"name": "shop-chat", "project": "shop", "service": "chat", "artifact": tiny.to_str().unwrap(),
             "aliases": ["Shop/Chat"], "idle_timeout": idle},
            {"name": "shop-small", "project": "shop", "service": "chat", "artifact": tiny.to_str().unwrap()},
        ],
    })
}

async fn plan(s: &Server, token: &str, d: &Value) -> Value {
    s.ok(token, PLAN, json!({"d": d})).await["plan"].clone()
}

async fn apply(s: &Server, token: &str, d: &Value, etag: &str, key: Option<&str>) -> Value {
    s.ok(token, APPLY, json!({"d": d, "e": etag, "k": key})).await["apply"].clone()
}

async fn plan_apply_plan(db: &Db) {
    let s = Server::start(db).await;
    let desired = doc(&s, "2m");
    let audit_before = s.audit_count().await;
    let first = plan(&s, ADMIN, &desired).await;
    let addresses: Vec<&str> =
        first["changes"].as_array().unwrap().iter().map(|c| c["address"].as_str().unwrap()).collect();
    assert_eq!(addresses, ["project/shop", "service/shop/chat", "model/shop-chat", "model/shop-small"]);
    assert_eq!(s.audit_count().await, audit_before, "a plan writes nothing");
    assert_eq!(s.ok(ADMIN, "{ models { nodes { name } } }", json!({})).await["models"]["nodes"], json!([]));

    let etag = first["etag"].as_str().unwrap();
    let applied = apply(&s, ADMIN, &desired, etag, Some("deploy-1")).await;
    assert_eq!(applied["applied"], true, "{applied}");
    assert_eq!(applied["changes"].as_array().unwrap().len(), 4);
    assert_eq!(s.audit_count().await, audit_before + 4, "one audit event per change");
    let again = plan(&s, ADMIN, &desired).await;
    assert_eq!(again["changes"], json!([]), "{again}");
    assert_eq!(again["etag"], applied["etag"]);

    // The applied model serves real tokens to a key of its project.
    let (key, _) = s.key(ADMIN, "shop", &["inference"]).await;
    let (status, body) = s.chat(&key, "Shop/Chat").await;
    assert_eq!(status, 200, "{body}");

    // Replaying the same idempotency key returns the first result and writes nothing.
    let audit = s.audit_count().await;
    let replay = apply(&s, ADMIN, &desired, etag, Some("deploy-1")).await;
    assert_eq!(replay["changes"], applied["changes"]);
    assert_eq!(replay["etag"], applied["etag"]);
    assert_eq!(s.audit_count().await, audit);
    // The same key for a different request is a conflict.
    let code = s.error_code(ADMIN, APPLY, json!({"d": doc(&s, "9m"), "e": etag, "k": "deploy-1"})).await;
    assert_eq!(code, "CONFLICT");

    // An update is planned with its field diff; a removed model is a destructive delete.
    let mut changed = doc(&s, "9m");
    changed["models"].as_array_mut().unwrap().pop();
    let p = plan(&s, ADMIN, &changed).await;
    let changes = p["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{p}");
    assert_eq!(changes[0]["address"], "model/shop-chat");
    assert_eq!(changes[0]["fields"], json!([{"field": "idle_timeout", "before": "2m", "after": "9m"}]));
    assert_eq!(changes[0]["destructive"], false);
    assert_eq!((changes[1]["action"].as_str(), changes[1]["destructive"].as_bool()), (Some("DELETE"), Some(true)));
    let applied = apply(&s, ADMIN, &changed, p["etag"].as_str().unwrap(), None).await;
    assert_eq!(applied["applied"], true);
    let (status, _) = s.chat(&key, "shop-small").await;
    assert_eq!(status, 404, "a model deleted by apply is gone");
}
on_both_databases!(plan_apply_plan);

async fn a_stale_etag_conflicts_and_writes_nothing(db: &Db) {
    let s = Server::start(db).await;
    let desired = doc(&s, "2m");
    let base = plan(&s, ADMIN, &desired).await["etag"].as_str().unwrap().to_owned();
    // Someone else changes the project first.
    let other = json!({"projects": [{"name": "shop", "description": "someone else"}]});
    let their_etag = plan(&s, ADMIN, &other).await["etag"].as_str().unwrap().to_owned();
    assert_eq!(their_etag, base);
    assert_eq!(apply(&s, ADMIN, &other, &their_etag, None).await["applied"], true);
    let before = (s.snapshot().await, s.audit_count().await);
    let answer = s.gql(ADMIN, APPLY, json!({"d": desired, "e": base, "k": null})).await;
    assert_eq!(answer["errors"][0]["extensions"]["code"], "CONFLICT", "{answer}");
    assert_eq!((s.snapshot().await, s.audit_count().await), before);
    // Two applies racing on one etag: exactly one wins.
    let fresh = plan(&s, ADMIN, &desired).await["etag"].as_str().unwrap().to_owned();
    let (a, b) = tokio::join!(
        s.gql(ADMIN, APPLY, json!({"d": desired, "e": fresh, "k": null})),
        s.gql(ADMIN, APPLY, json!({"d": doc(&s, "5m"), "e": fresh, "k": null})),
    );
    let won = [&a, &b].iter().filter(|r| r["data"]["apply"]["applied"] == true).count();
    let conflicts = [&a, &b].iter().filter(|r| r["errors"][0]["extensions"]["code"] == "CONFLICT").count();
    assert_eq!((won, conflicts), (1, 1), "{a}\n{b}");
}
on_both_databases!(a_stale_etag_conflicts_and_writes_nothing);

async fn bad_documents_are_user_errors(db: &Db) {
    let s = Server::start(db).await;
    let before = (s.snapshot().await, s.audit_count().await);
    let tiny = s.artifacts.join("tiny.gguf");
    for (d, needle) in [
        (json!({"modles": []}), "modles"),
        (json!({"models": [{"name": "a", "artifact": "rel.gguf"}]}), "models[0].artifact"),
        (json!({"models": [{"name": "a", "artifact": tiny, "warm_tier": "gpu"}]}), "gpu"),
        (json!({"models": [{"name": "a", "artifact": tiny}, {"name": "a", "artifact": tiny}]}), "twice"),
        (json!({"services": [{"project": "nope", "name": "s"}], "projects": [{"name": "x"}, {"name": "x"}]}), "twice"),
        (json!({"models": [{"name": "a", "artifact": "/etc/passwd"}]}), "artifact directories"),
    ] {
        let p = plan(&s, ADMIN, &d).await;
        let message = p["userErrors"].to_string();
        assert!(message.contains(needle), "{d}: {p}");
        let answer = s.gql(ADMIN, APPLY, json!({"d": d, "e": "0", "k": null})).await;
        assert!(answer["data"]["apply"]["applied"] == false || answer["errors"].is_array(), "{answer}");
    }
    assert_eq!((s.snapshot().await, s.audit_count().await), before);
}
on_both_databases!(bad_documents_are_user_errors);

async fn apply_then_restart_shows_no_drift(db: &Db) {
    let s = Server::start(db).await;
    let desired = doc(&s, "2m");
    let etag = plan(&s, ADMIN, &desired).await["etag"].as_str().unwrap().to_owned();
    assert_eq!(apply(&s, ADMIN, &desired, &etag, None).await["applied"], true);
    let (key, _) = s.key(ADMIN, "shop", &["inference"]).await;
    let (data, clock) = s.into_parts();
    let s = Server::start_in(db, data, clock).await;
    let p = plan(&s, ADMIN, &desired).await;
    assert_eq!(p["changes"], json!([]), "{p}");
    let (status, body) = s.chat(&key, "shop-chat").await;
    assert_eq!(status, 200, "the key and the model survive a restart: {body}");
}
on_both_databases!(apply_then_restart_shows_no_drift);

/// What the console's deploy form does: read a project as a document, add a
/// model from the artifact listing, plan, apply with the plan's etag.
async fn a_projects_document_is_what_a_deploy_form_edits(db: &Db) {
    let s = Server::start(db).await;
    let desired = doc(&s, "2m");
    let etag = plan(&s, ADMIN, &desired).await["etag"].as_str().unwrap().to_owned();
    assert_eq!(apply(&s, ADMIN, &desired, &etag, None).await["applied"], true);
    let read = "query($p: String!) { project(name: $p) { desired } }";
    let mut current = s.ok(ADMIN, read, json!({"p": "shop"})).await["project"]["desired"].clone();
    assert_eq!(plan(&s, ADMIN, &current).await["changes"], json!([]), "the document is the state: {current}");
    assert_eq!(current["models"].as_array().unwrap().len(), 2);

    // The listing offers the shared tiny model; a read key may not list files.
    let (manager, _) = s.key(ADMIN, "shop", &["manage"]).await;
    let listed = s.ok(&manager, "{ artifacts { path bytes format } }", json!({})).await["artifacts"].clone();
    let tiny = listed.as_array().unwrap().iter().find(|f| f["path"].as_str().unwrap().ends_with("/tiny.gguf")).unwrap();
    assert_eq!(tiny["format"], "GGUF");
    assert!(tiny["bytes"].as_u64().unwrap() > 0, "{tiny}");
    let (reader, _) = s.key(ADMIN, "shop", &["read"]).await;
    assert_eq!(s.error_code(&reader, "{ artifacts { path } }", json!({})).await, "FORBIDDEN");

    current["models"].as_array_mut().unwrap().push(json!({
        "name": "shop-new", "project": "shop", "service": "chat", "artifact": tiny["path"], "idle_timeout": "30s",
    }));
    let p = plan(&s, &manager, &current).await;
    let changes = p["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{p}");
    assert_eq!(
        (changes[0]["action"].as_str(), changes[0]["address"].as_str()),
        (Some("CREATE"), Some("model/shop-new"))
    );
    assert_eq!(apply(&s, &manager, &current, p["etag"].as_str().unwrap(), None).await["applied"], true);
    let again = s.ok(&manager, read, json!({"p": "shop"})).await["project"]["desired"].clone();
    assert_eq!(plan(&s, &manager, &again).await["changes"], json!([]));
    // Another project's document is not the manager's to read.
    assert_eq!(s.error_code(&manager, read, json!({"p": "default"})).await, "NOT_FOUND");
}
on_both_databases!(a_projects_document_is_what_a_deploy_form_edits);
