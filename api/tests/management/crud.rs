//! Every mutation: its happy path, and its bad input answered with
//! userErrors and nothing written (state and audit log unchanged).

use serde_json::{Value, json};

use crate::harness::{ADMIN, Db, Server};
use crate::on_both_databases;

const CREATE_PROJECT: &str = "mutation($i: CreateProjectInput!) { createProject(input: $i) { project { name description } userErrors { field message code } } }";
const UPDATE_PROJECT: &str = "mutation($i: UpdateProjectInput!) { updateProject(input: $i) { project { description } userErrors { field code } } }";
const DELETE_PROJECT: &str =
    "mutation($i: DeleteProjectInput!) { deleteProject(input: $i) { deletedId userErrors { field code } } }";
const CREATE_SERVICE: &str =
    "mutation($i: CreateServiceInput!) { createService(input: $i) { service { name } userErrors { field code } } }";
const UPDATE_SERVICE: &str = "mutation($i: UpdateServiceInput!) { updateService(input: $i) { service { description } userErrors { field code } } }";
const DELETE_SERVICE: &str =
    "mutation($i: DeleteServiceInput!) { deleteService(input: $i) { deletedId userErrors { field code } } }";
const CREATE_MODEL: &str = "mutation($i: CreateModelInput!) { createModel(input: $i) {
    model { name aliases artifact scaling { minReplicas idleTimeout warmTier } service { name } project { name } }
    userErrors { field message code } } }";
const UPDATE_MODEL: &str = "mutation($i: UpdateModelInput!) { updateModel(input: $i) {
    model { scaling { minReplicas idleTimeout } aliases } userErrors { field message code } } }";
const DELETE_MODEL: &str =
    "mutation($i: DeleteModelInput!) { deleteModel(input: $i) { deletedId userErrors { field code } } }";

/// Runs a mutation that must fail with user errors; checks nothing was written.
async fn refused(s: &Server, query: &str, input: Value, field: &str, code: &str) {
    let before = (s.snapshot().await, s.audit_count().await);
    let data = s.ok(ADMIN, query, json!({"i": input})).await;
    let payload = data.as_object().unwrap().values().next().unwrap();
    let errors = payload["userErrors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e["field"] == field && e["code"] == code), "expected {field}/{code} in {payload:#}");
    assert_eq!((s.snapshot().await, s.audit_count().await), before, "a refused mutation wrote something");
}

async fn projects_and_services(db: &Db) {
    let s = Server::start(db).await;
    let data = s.ok(ADMIN, CREATE_PROJECT, json!({"i": {"name": "acme", "description": "Acme's models"}})).await;
    assert_eq!(data["createProject"]["project"], json!({"name": "acme", "description": "Acme's models"}));
    refused(&s, CREATE_PROJECT, json!({"name": "Bad Name!"}), "input.name", "INVALID").await;
    refused(&s, CREATE_PROJECT, json!({"name": "acme"}), "input.name", "TAKEN").await;
    refused(&s, CREATE_PROJECT, json!({"name": "x", "description": "d".repeat(3000)}), "input.description", "INVALID")
        .await;

    let data = s.ok(ADMIN, UPDATE_PROJECT, json!({"i": {"name": "acme", "description": "Renamed"}})).await;
    assert_eq!(data["updateProject"]["project"]["description"], "Renamed");
    refused(
        &s,
        UPDATE_PROJECT,
        json!({"name": "acme", "description": "d".repeat(3000)}),
        "input.description",
        "INVALID",
    )
    .await;
    assert_eq!(s.error_code(ADMIN, UPDATE_PROJECT, json!({"i": {"name": "nope"}})).await, "NOT_FOUND");

    let data = s.ok(ADMIN, CREATE_SERVICE, json!({"i": {"project": "acme", "name": "chat"}})).await;
    assert_eq!(data["createService"]["service"]["name"], "chat");
    refused(&s, CREATE_SERVICE, json!({"project": "acme", "name": "chat"}), "input.name", "TAKEN").await;
    refused(&s, CREATE_SERVICE, json!({"project": "acme", "name": "-x-"}), "input.name", "INVALID").await;
    let data =
        s.ok(ADMIN, UPDATE_SERVICE, json!({"i": {"project": "acme", "name": "chat", "description": "Chat"}})).await;
    assert_eq!(data["updateService"]["service"]["description"], "Chat");
    refused(
        &s,
        UPDATE_SERVICE,
        json!({"project": "acme", "name": "none", "description": "x"}),
        "input.name",
        "NOT_FOUND",
    )
    .await;
    refused(&s, DELETE_SERVICE, json!({"project": "acme", "name": "default"}), "input.name", "PROTECTED").await;
    let data = s.ok(ADMIN, DELETE_SERVICE, json!({"i": {"project": "acme", "name": "chat"}})).await;
    assert!(data["deleteService"]["deletedId"].is_string());

    refused(&s, DELETE_PROJECT, json!({"name": "default"}), "name", "PROTECTED").await;
    s.key(ADMIN, "acme", &["inference"]).await;
    let data = s.ok(ADMIN, DELETE_PROJECT, json!({"i": {"name": "acme"}})).await;
    assert!(data["deleteProject"]["deletedId"].is_string(), "{data}");
    let projects = s.ok(ADMIN, "{ projects { nodes { name } } }", json!({})).await;
    assert_eq!(projects["projects"]["nodes"], json!([{"name": "default"}]));

    // Every change above is in the audit log, with its before and after.
    let events = s
        .ok(ADMIN, "{ auditEvents(first: 100) { nodes { action objectName actor via before after } } }", json!({}))
        .await;
    let actions: Vec<&str> =
        events["auditEvents"]["nodes"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for expected in [
        "project.create",
        "project.update",
        "service.create",
        "service.update",
        "service.delete",
        "project.delete",
        "api_key.create",
        "api_key.delete",
    ] {
        assert!(actions.contains(&expected), "{expected} missing from {actions:?}");
    }
    let update =
        events["auditEvents"]["nodes"].as_array().unwrap().iter().find(|e| e["action"] == "project.update").unwrap();
    assert_eq!(update["before"]["description"], "Acme's models");
    assert_eq!(update["after"]["description"], "Renamed");
    assert_eq!(update["via"], "graphql");
    assert!(update["actor"].as_str().unwrap().starts_with("admin from GREENTHREAD_ADMIN_TOKEN"), "{update}");
}
on_both_databases!(projects_and_services);

async fn models(db: &Db) {
    let s = Server::start(db).await;
    let tiny = s.artifacts.join("tiny.gguf").to_str().unwrap().to_owned();
    let input = json!({
        "project": "default", "name": "tiny", "artifact": tiny, "aliases": ["Org/Tiny"],
        "scaling": {"idleTimeout": "30s", "warmTier": "disk"},
    });
    let data = s.ok(ADMIN, CREATE_MODEL, json!({"i": input})).await;
    let model = &data["createModel"]["model"];
    assert_eq!(model["name"], "tiny");
    assert_eq!(model["scaling"], json!({"minReplicas": 0, "idleTimeout": "30s", "warmTier": "disk"}));
    assert_eq!(
        (model["service"]["name"].as_str(), model["project"]["name"].as_str()),
        (Some("default"), Some("default"))
    );
    // The new model is served at once, with real tokens.
    let (key, _) = s.key(ADMIN, "default", &["inference"]).await;
    let (status, body) = s.chat(&key, "Org/Tiny").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    let bad = |patch: Value| {
        let mut i = json!({"project": "default", "name": "other", "artifact": tiny});
        i.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
        i
    };
    refused(&s, CREATE_MODEL, bad(json!({"name": "tiny"})), "input.name", "TAKEN").await;
    refused(&s, CREATE_MODEL, bad(json!({"aliases": ["Org/Tiny"]})), "input.models", "TAKEN").await;
    refused(&s, CREATE_MODEL, bad(json!({"name": "../etc"})), "input.name", "INVALID").await;
    refused(
        &s,
        CREATE_MODEL,
        bad(json!({"artifact": "/etc/passwd"})),
        "input.models.other.artifact",
        "FORBIDDEN_ARTIFACT",
    )
    .await;
    refused(
        &s,
        CREATE_MODEL,
        bad(json!({"artifact": format!("{}/../../x.gguf", s.artifacts.display())})),
        "input.models.other.artifact",
        "FORBIDDEN_ARTIFACT",
    )
    .await;
    refused(&s, CREATE_MODEL, bad(json!({"artifact": "http://169.254.169.254/latest"})), "input.artifact", "INVALID")
        .await;
    refused(&s, CREATE_MODEL, bad(json!({"artifact": "relative.gguf"})), "input.artifact", "INVALID").await;
    refused(&s, CREATE_MODEL, bad(json!({"service": "nope"})), "input.service", "NOT_FOUND").await;
    refused(&s, CREATE_MODEL, bad(json!({"scaling": {"idleTimeout": "soon"}})), "input.scaling.idleTimeout", "INVALID")
        .await;
    refused(&s, CREATE_MODEL, bad(json!({"scaling": {"warmTier": "gpu"}})), "input.scaling.warmTier", "INVALID").await;
    refused(&s, CREATE_MODEL, bad(json!({"scaling": {"minReplicas": 3}})), "input.models", "INVALID").await;
    refused(&s, CREATE_MODEL, bad(json!({"sha256": "abc"})), "input.sha256", "INVALID").await;
    refused(&s, CREATE_MODEL, bad(json!({"contextLength": 8})), "input.models", "INVALID").await;

    let data = s
        .ok(
            ADMIN,
            UPDATE_MODEL,
            json!({"i": {"name": "tiny", "scaling": {"minReplicas": 1}, "aliases": ["Org/Tiny", "Org/T2"]}}),
        )
        .await;
    assert_eq!(data["updateModel"]["model"]["scaling"]["minReplicas"], 1);
    refused(&s, UPDATE_MODEL, json!({"name": "tiny", "scaling": {"maxReplicas": 0}}), "input.models", "INVALID").await;
    refused(
        &s,
        UPDATE_MODEL,
        json!({"name": "tiny", "artifact": "/etc/passwd"}),
        "input.models.tiny.artifact",
        "FORBIDDEN_ARTIFACT",
    )
    .await;
    assert_eq!(s.error_code(ADMIN, UPDATE_MODEL, json!({"i": {"name": "nope"}})).await, "NOT_FOUND");
    let (status, _) = s.chat(&key, "Org/T2").await;
    assert_eq!(status, 200, "a new alias answers at once");

    let data = s.ok(ADMIN, DELETE_MODEL, json!({"i": {"name": "tiny"}})).await;
    assert!(data["deleteModel"]["deletedId"].is_string());
    assert_eq!(s.error_code(ADMIN, DELETE_MODEL, json!({"i": {"name": "tiny"}})).await, "NOT_FOUND");
    let (status, body) = s.chat(&key, "tiny").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "model_not_found");
}
on_both_databases!(models);

async fn a_new_artifact_restarts_the_model_on_the_new_weights(db: &Db) {
    let s = Server::start(db).await;
    let other = crate::harness::tiny_model(&s.artifacts, "other", 7);
    s.project_with_model("p", "m").await;
    let (key, _) = s.key(ADMIN, "p", &["inference"]).await;
    let greedy = json!({"model": "m", "prompt": "a b c", "max_tokens": 8, "temperature": 0});
    let (status, first) = s.v1(&key, reqwest::Method::POST, "/v1/completions", Some(greedy.clone())).await;
    assert_eq!(status, 200, "{first}");
    let data = s.ok(ADMIN, UPDATE_MODEL, json!({"i": {"name": "m", "artifact": other.to_str().unwrap()}})).await;
    assert_eq!(data["updateModel"]["userErrors"], json!([]));
    let (status, second) = s.v1(&key, reqwest::Method::POST, "/v1/completions", Some(greedy)).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(
        first["choices"][0]["text"], second["choices"][0]["text"],
        "other weights (another seed) must give another greedy continuation"
    );
}
on_both_databases!(a_new_artifact_restarts_the_model_on_the_new_weights);
