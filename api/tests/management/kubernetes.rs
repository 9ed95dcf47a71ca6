//! What the Kubernetes operator writes to the database and reads back: a
//! Model resource's declaration goes through the management plane (its
//! project and service created on first use, validated, audited), and the
//! scheduler's view comes back for the resource's status.

use greenthread_scheduler::kube::ModelResourceSpec;
use greenthread_scheduler::kube::convert::to_decl;
use greenthread_scheduler::kube::reconcile::{ModelStore, StoreError};
use serde_json::json;

use crate::harness::{ADMIN, Db, Server};
use crate::on_both_databases;

fn spec(artifact: &str) -> ModelResourceSpec {
    serde_json::from_value(json!({"artifact": artifact, "idleTimeout": "1m"})).unwrap()
}

async fn a_resource_reaches_the_database_and_the_scheduler(db: &Db) {
    let s = Server::start(db).await;
    let store =
        greenthread_api::kube_store::DatabaseModels::new(s.state.management.clone().unwrap(), s.state.manager.clone());
    let tiny = s.artifacts.join("tiny.gguf");
    let decl = to_decl("kube-model", "team-k", &spec(tiny.to_str().unwrap())).unwrap();
    store.put(decl.clone()).await.unwrap();
    assert_eq!(store.get("kube-model").await.unwrap(), Some(decl.clone()));

    // The namespace's project and the default service came with it, and GraphQL sees the model.
    let data = s
        .ok(
            ADMIN,
            "{ model(name: \"kube-model\") { project { name } service { name } scaling { idleTimeout } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["model"],
        json!({"project": {"name": "team-k"}, "service": {"name": "default"}, "scaling": {"idleTimeout": "1m"}})
    );
    let log = s
        .ok(
            ADMIN,
            "{ auditEvents(filter: {action: \"model.create\"}, first: 5) { nodes { actor via objectName } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        log["auditEvents"]["nodes"][0],
        json!({"actor": "kubernetes (team-k/kube-model)", "via": "kubernetes", "objectName": "kube-model"})
    );

    // The scheduler's view, for the resource's status.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let runtime = loop {
        let rt = store.runtime("kube-model").await.unwrap();
        if rt.as_ref().is_some_and(|r| r.state == "staged") || tokio::time::Instant::now() > deadline {
            break rt.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!((runtime.state.as_str(), runtime.tier.as_deref()), ("staged", Some("ram")));

    // A refusal says why: an artifact outside the server's artifact directories.
    let outside = to_decl("kube-other", "team-k", &spec("/etc/passwd")).unwrap();
    match store.put(outside).await {
        Err(StoreError::Refused(why)) => assert!(why.contains("artifact"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.get("kube-other").await.unwrap(), None);

    store.remove("kube-model").await.unwrap();
    assert_eq!(store.get("kube-model").await.unwrap(), None);
    store.remove("kube-model").await.unwrap();
}

on_both_databases!(a_resource_reaches_the_database_and_the_scheduler);
