//! What the Kubernetes operator writes to the database and reads back: a
//! Model resource's declaration goes through the management plane (its
//! project and service created on first use, validated, audited), and the
//! scheduler's view comes back for the resource's status.

use std::future::Future;

use greenthread_kube::ModelResourceSpec;
use greenthread_kube::convert::to_decl;
use greenthread_kube::reconcile::{ModelStore, StoreError};
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

/// The operator as it runs in a cluster — kube's Controller, the real
/// reconciler, the database store — against a real API server serving the
/// Model CRD (`scripts/apiserver.sh`, which `scripts/test.sh` starts), with
/// a real GreenThread server and database behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_against_a_real_api_server() {
    use greenthread_kube::ModelResource;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
    use kube::{CustomResourceExt, ResourceExt};

    let Some(path) = std::env::var_os("GREENTHREAD_TEST_KUBECONFIG") else {
        panic!(
            "GREENTHREAD_TEST_KUBECONFIG is not set: scripts/test.sh starts a CRD-serving API server \
             (scripts/apiserver.sh) and sets it"
        );
    };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await.unwrap();
    let client = kube::Client::try_from(config).unwrap();

    // The CRD, as the chart installs it.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let apply = PatchParams::apply("greenthread-test").force();
    crds.patch("models.greenthread.ai", &apply, &Patch::Apply(ModelResource::crd())).await.unwrap();
    let namespace = format!("kt-{}", &uuid::Uuid::now_v7().simple().to_string()[24..]);
    let models: Api<ModelResource> = Api::namespaced(client.clone(), &namespace);
    // A new kind is served a moment after it is Established.
    until("the Model kind is served", || async { models.list(&Default::default()).await.is_ok() }).await;

    let db = Db::sqlite();
    let s = Server::start(&db).await;
    greenthread_api::kube_operator::spawn_operator(
        client.clone(),
        Some(&namespace),
        s.state.management.clone().unwrap(),
        s.state.manager.clone(),
        std::time::Duration::from_millis(500),
    );
    let tiny = s.artifacts.join("tiny.gguf");
    let model: ModelResource = serde_json::from_value(json!({
        "apiVersion": "greenthread.ai/v1alpha1", "kind": "Model",
        "metadata": {"name": "kube-live", "namespace": namespace},
        "spec": {"artifact": tiny, "idleTimeout": "2m"},
    }))
    .unwrap();
    models.create(&PostParams::default(), &model).await.unwrap();

    // kubectl apply → the database, with status and the finalizer.
    let query = "{ model(name: \"kube-live\") { project { name } scaling { idleTimeout } } }";
    until("the model reaches the database", || async {
        s.gql(ADMIN, query, json!({})).await["data"]["model"]["scaling"]["idleTimeout"] == "2m"
    })
    .await;
    assert_eq!(s.ok(ADMIN, query, json!({})).await["model"]["project"]["name"], namespace.as_str());
    until("the status says Synced and the model's state", || async {
        let m = models.get("kube-live").await.unwrap();
        let status = m.status.clone().unwrap_or_default();
        status.conditions.iter().any(|c| c.type_ == "Synced" && c.status == "True") && status.state.is_some()
    })
    .await;
    assert_eq!(models.get("kube-live").await.unwrap().finalizers(), ["greenthread.ai/drain"]);

    // An edit of the resource → the database.
    let merge = PatchParams::default();
    models.patch("kube-live", &merge, &Patch::Merge(json!({"spec": {"idleTimeout": "45s"}}))).await.unwrap();
    until("the edit reaches the database", || async {
        s.gql(ADMIN, query, json!({})).await["data"]["model"]["scaling"]["idleTimeout"] == "45s"
    })
    .await;

    // A GraphQL edit → the resource.
    let update = "mutation { updateModel(input: {name: \"kube-live\", scaling: {idleTimeout: \"10m\"}}) { userErrors { message } } }";
    assert_eq!(s.ok(ADMIN, update, json!({})).await["updateModel"]["userErrors"], json!([]));
    until("the GraphQL edit reaches the resource", || async {
        models.get("kube-live").await.unwrap().spec.idle_timeout.as_deref() == Some("10m")
    })
    .await;

    // kubectl delete → the finalizer holds the resource until the model has left the database.
    models.delete("kube-live", &DeleteParams::default()).await.unwrap();
    until("the model leaves the database and the resource goes", || async {
        s.gql(ADMIN, query, json!({})).await["errors"][0]["extensions"]["code"] == "NOT_FOUND"
            && models.get_opt("kube-live").await.unwrap().is_none()
    })
    .await;
    db.cleanup().await;
}

/// Waits up to 30 s for `check`, failing with `what`.
async fn until<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
