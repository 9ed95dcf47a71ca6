//! The operator's reconciler against a scripted Kubernetes API double and
//! an in-memory stand-in for the database: create, update from either
//! side, conflict, status, and delete through the finalizer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support {
    pub mod fake_api;
}

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use greenthread_core::desired::ModelDecl;
use greenthread_kube::ModelResource;
use greenthread_kube::reconcile::{Context, ModelStore, RuntimeView, StoreError, StoreFuture, reconcile};
use greenthread_kube::sync::digest;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use support::fake_api::FakeApi;

const MODEL: &str = "/apis/greenthread.ai/v1alpha1/namespaces/team-a/models/qwen";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/team-a/events";

/// The database's side, in memory: what the store trait promises, nothing more.
#[derive(Default)]
struct Store {
    models: Mutex<BTreeMap<String, ModelDecl>>,
    runtime: Mutex<BTreeMap<String, RuntimeView>>,
    refuse: Mutex<Option<String>>,
}

impl ModelStore for Store {
    fn get<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<ModelDecl>> {
        Box::pin(async move { Ok(self.models.lock().unwrap().get(name).cloned()) })
    }
    fn put(&self, decl: ModelDecl) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if let Some(why) = self.refuse.lock().unwrap().clone() {
                return Err(StoreError::Refused(why));
            }
            self.models.lock().unwrap().insert(decl.spec.name.to_string(), decl);
            Ok(())
        })
    }
    fn remove<'a>(&'a self, name: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.models.lock().unwrap().remove(name);
            Ok(())
        })
    }
    fn runtime<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<RuntimeView>> {
        Box::pin(async move { Ok(self.runtime.lock().unwrap().get(name).cloned()) })
    }
}

struct World {
    api: Arc<FakeApi>,
    store: Arc<Store>,
    ctx: Arc<Context>,
}

fn world() -> World {
    let api = FakeApi::new();
    let client = api.client(Arc::new(AtomicBool::new(false)));
    let store = Arc::new(Store::default());
    let recorder =
        Recorder::new(client.clone(), Reporter { controller: "greenthread-operator".into(), instance: None });
    let ctx = Arc::new(Context { client, store: store.clone(), recorder, refresh: std::time::Duration::from_secs(30) });
    World { api, store, ctx }
}

fn resource(spec: Value) -> Value {
    json!({
        "apiVersion": "greenthread.ai/v1alpha1", "kind": "Model",
        "metadata": {"name": "qwen", "namespace": "team-a", "uid": "0d6c5b8e-0000-4000-8000-000000000001"},
        "spec": spec,
    })
}

impl World {
    /// One reconcile pass over the resource as the API holds it now.
    async fn pass(&self) {
        let object: ModelResource = serde_json::from_value(self.api.get(MODEL).expect("the Model exists")).unwrap();
        reconcile(Arc::new(object), self.ctx.clone()).await.unwrap();
    }

    fn object(&self) -> Value {
        self.api.get(MODEL).unwrap()
    }

    fn db(&self) -> Option<ModelDecl> {
        self.store.models.lock().unwrap().get("qwen").cloned()
    }

    fn condition(&self, type_: &str) -> Value {
        let conditions = self.object()["status"]["conditions"].clone();
        conditions.as_array().unwrap().iter().find(|c| c["type"] == type_).cloned().unwrap_or(Value::Null)
    }

    fn event_reasons(&self) -> Vec<String> {
        self.api.list(EVENTS).iter().map(|e| e["reason"].as_str().unwrap().to_owned()).collect()
    }

    /// `kubectl apply` of a new spec.
    fn edit_resource(&self, spec: Value) {
        let mut object = self.object();
        object["spec"] = spec;
        let generation = object["metadata"]["generation"].as_i64().unwrap() + 1;
        object["metadata"]["generation"] = json!(generation);
        self.api.seed_keeping_generation(MODEL, object);
    }
}

#[tokio::test]
async fn a_new_model_gets_a_finalizer_then_reaches_the_database_with_its_status() {
    let w = world();
    w.api.seed(MODEL, resource(json!({"artifact": "s3://models/qwen.gguf", "idleTimeout": "2m"})));
    w.pass().await;
    assert_eq!(w.object()["metadata"]["finalizers"], json!(["greenthread.ai/drain"]));
    assert!(w.db().is_none(), "the first pass only adds the finalizer");

    w.store.runtime.lock().unwrap().insert(
        "qwen".into(),
        RuntimeView {
            state: "sleeping".into(),
            tier: Some("ram".into()),
            replicas: 0,
            device_bytes: 0,
            last_wake_ms: Some(412.0),
        },
    );
    w.pass().await;
    let db = w.db().expect("written to the database");
    assert_eq!((db.spec.project.as_str(), db.service.as_str()), ("team-a", "default"));
    assert_eq!(db.spec.scaling.idle_timeout.as_secs(), 120);
    let status = &w.object()["status"];
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["syncedDigest"], digest(&db));
    assert_eq!((status["state"].as_str(), status["tier"].as_str()), (Some("sleeping"), Some("ram")));
    assert_eq!(status["lastWakeMs"], 412.0);
    assert_eq!(
        (w.condition("Synced")["status"].as_str(), w.condition("Synced")["reason"].as_str()),
        (Some("True"), Some("Applied"))
    );
    assert_eq!(w.condition("Ready")["status"], "True");
    assert_eq!(w.event_reasons(), ["Synced"]);

    // Nothing changed: the next pass writes nothing but may refresh status.
    let writes = w.api.writes.lock().unwrap().len();
    w.pass().await;
    let after: Vec<String> = w.api.writes.lock().unwrap()[writes..].to_vec();
    assert!(after.is_empty(), "an idle pass wrote {after:?}");
}

#[tokio::test]
async fn a_kubectl_edit_goes_to_the_database_and_a_graphql_edit_comes_back_into_the_resource() {
    let w = world();
    w.api.seed(MODEL, resource(json!({"artifact": "s3://models/qwen.gguf"})));
    w.pass().await;
    w.pass().await;

    // kubectl apply: a new generation.
    w.edit_resource(json!({"artifact": "s3://models/qwen.gguf", "idleTimeout": "30s", "neverPreempt": true}));
    w.pass().await;
    let db = w.db().unwrap();
    assert_eq!(db.spec.scaling.idle_timeout.as_secs(), 30);
    assert!(db.spec.scaling.never_preempt);
    assert_eq!(w.object()["status"]["observedGeneration"], 2);

    // GraphQL: the database changes, the resource does not.
    let mut changed = db.clone();
    changed.spec.scaling.idle_timeout = std::time::Duration::from_secs(600);
    w.store.models.lock().unwrap().insert("qwen".into(), changed.clone());
    w.pass().await;
    let object = w.object();
    assert_eq!(object["spec"]["idleTimeout"], "10m", "{object:#}");
    assert_eq!(object["spec"]["project"], "team-a");
    assert_eq!(object["metadata"]["generation"], 3);
    assert_eq!(object["status"]["observedGeneration"], 3, "the write-back is not mistaken for a kubectl edit");
    assert_eq!(object["status"]["syncedDigest"], digest(&changed));
    assert_eq!(w.db().unwrap(), changed, "the database keeps the GraphQL change");
    assert!(w.event_reasons().contains(&"Updated".to_owned()));
    assert_eq!(w.condition("Synced")["reason"], "FromDatabase");
}

#[tokio::test]
async fn when_both_sides_changed_the_resource_wins_and_says_so() {
    let w = world();
    w.api.seed(MODEL, resource(json!({"artifact": "s3://models/qwen.gguf"})));
    w.pass().await;
    w.pass().await;
    let mut graphql = w.db().unwrap();
    graphql.spec.scaling.idle_timeout = std::time::Duration::from_secs(600);
    w.store.models.lock().unwrap().insert("qwen".into(), graphql);
    w.edit_resource(json!({"artifact": "s3://models/qwen.gguf", "idleTimeout": "45s"}));
    w.pass().await;
    assert_eq!(w.db().unwrap().spec.scaling.idle_timeout.as_secs(), 45);
    assert_eq!(w.object()["spec"]["idleTimeout"], "45s");
    assert_eq!(w.condition("Synced")["reason"], "ResourceWon");
    let conflict = w.api.list(EVENTS).into_iter().find(|e| e["reason"] == "Conflict").expect("a Conflict event");
    assert_eq!(conflict["type"], "Warning");
    assert_eq!(conflict["regarding"]["name"], "qwen");
}

#[tokio::test]
async fn a_deleted_model_leaves_the_database_before_the_finalizer_lets_it_go() {
    let w = world();
    w.api.seed(MODEL, resource(json!({"artifact": "s3://models/qwen.gguf"})));
    w.pass().await;
    w.pass().await;
    assert!(w.db().is_some());
    // kubectl delete: the finalizer holds the object.
    let mut object = w.object();
    object["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    w.api.seed_keeping_generation(MODEL, object);
    w.pass().await;
    assert!(w.db().is_none(), "removed from the database");
    assert!(w.api.get(MODEL).is_none(), "the finalizer was removed, so the object is gone");
    assert!(w.event_reasons().contains(&"Removed".to_owned()));
}

#[tokio::test]
async fn an_invalid_or_refused_spec_is_reported_by_field_and_writes_nothing() {
    let w = world();
    w.api.seed(MODEL, resource(json!({"artifact": "relative/path.gguf", "idleTimeout": "soon"})));
    w.pass().await;
    w.pass().await;
    assert!(w.db().is_none());
    let synced = w.condition("Synced");
    assert_eq!((synced["status"].as_str(), synced["reason"].as_str()), (Some("False"), Some("Invalid")));
    let message = synced["message"].as_str().unwrap();
    assert!(message.contains("spec.artifact") && message.contains("spec.idleTimeout"), "{message}");

    *w.store.refuse.lock().unwrap() = Some("the alias qwen-chat is taken by model llama".into());
    w.edit_resource(json!({"artifact": "s3://models/qwen.gguf", "aliases": ["qwen-chat"]}));
    w.pass().await;
    assert!(w.db().is_none());
    assert_eq!(w.condition("Synced")["reason"], "Rejected");
    assert!(w.condition("Synced")["message"].as_str().unwrap().contains("taken by model llama"));
}

#[tokio::test]
async fn a_name_another_project_uses_is_neither_taken_over_nor_removed() {
    let w = world();
    let theirs = greenthread_kube::convert::to_decl(
        "qwen",
        "team-b",
        &serde_json::from_value(json!({"artifact": "s3://b/qwen.gguf"})).unwrap(),
    )
    .unwrap();
    w.store.models.lock().unwrap().insert("qwen".into(), theirs.clone());
    w.api.seed(MODEL, resource(json!({"artifact": "s3://models/qwen.gguf"})));
    w.pass().await;
    w.pass().await;
    assert_eq!(w.db().unwrap(), theirs);
    assert_eq!(w.condition("Synced")["reason"], "NameTaken");
    let mut object = w.object();
    object["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    w.api.seed_keeping_generation(MODEL, object);
    w.pass().await;
    assert_eq!(w.db().unwrap(), theirs, "team-b's model stays");
}

/// The first pass over a new Model, call by call, with kube-rs's
/// `tower_test` pattern: the reconciler's one request is the finalizer
/// patch, and nothing reaches the database before the finalizer is in place.
#[tokio::test]
async fn the_first_pass_only_adds_the_finalizer_call_by_call() {
    use http::{Request, Response};
    use kube::client::Body;

    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "team-a");
    let store = Arc::new(Store::default());
    let recorder =
        Recorder::new(client.clone(), Reporter { controller: "greenthread-operator".into(), instance: None });
    let ctx = Arc::new(Context { client, store: store.clone(), recorder, refresh: std::time::Duration::from_secs(30) });
    let object: ModelResource = serde_json::from_value(resource(json!({"artifact": "s3://models/qwen.gguf"}))).unwrap();
    let verifier = tokio::spawn(async move {
        let (request, send) = handle.next_request().await.expect("one request");
        assert_eq!(request.method(), http::Method::PATCH);
        assert_eq!(request.uri().path(), MODEL);
        assert_eq!(request.headers()["content-type"], "application/json-patch+json");
        let body = http_body_util::BodyExt::collect(request.into_body()).await.unwrap().to_bytes();
        let patch: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(patch[1], json!({"op": "add", "path": "/metadata/finalizers", "value": ["greenthread.ai/drain"]}));
        let mut answer = resource(json!({"artifact": "s3://models/qwen.gguf"}));
        answer["metadata"]["finalizers"] = json!(["greenthread.ai/drain"]);
        send.send_response(Response::builder().body(Body::from(answer.to_string().into_bytes())).unwrap());
        // Nothing more: the pass ends after the patch (the client is dropped, or nothing comes).
        let more = tokio::time::timeout(std::time::Duration::from_millis(200), handle.next_request()).await;
        assert!(!matches!(more, Ok(Some(_))), "a second request");
    });
    reconcile(Arc::new(object), ctx).await.unwrap();
    verifier.await.unwrap();
    assert!(store.models.lock().unwrap().is_empty());
}
