//! Operator actions on a model's runtime (wake, sleep), the nodes' tiers,
//! and the wake wait a chat answer reports.

use serde_json::json;

use crate::harness::{ADMIN, Db, Server};
use crate::on_both_databases;

const WAKE: &str = "mutation($i: ModelActionInput!) { wakeModel(input: $i) { model { runtime { state tier replicas lastWakeMs } } userErrors { field code message } } }";
const SLEEP: &str = "mutation($i: ModelActionInput!) { sleepModel(input: $i) { sleepingReplicas busyReplicas userErrors { field code message } } }";
const STATE: &str = "query($n: String!) { model(name: $n) { runtime { state tier } } }";

async fn state(s: &Server, name: &str) -> (String, Option<String>) {
    let data = s.ok(ADMIN, STATE, json!({"n": name})).await;
    let rt = &data["model"]["runtime"];
    (rt["state"].as_str().unwrap().to_owned(), rt["tier"].as_str().map(str::to_owned))
}

/// A chat request's `x-greenthread-wake-wait-ms`, in milliseconds.
async fn wake_wait(s: &Server, key: &str) -> f64 {
    let response = s
        .client
        .post(format!("{}/v1/chat/completions", s.base))
        .bearer_auth(key)
        .json(&json!({"model": "ops-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.headers()["x-greenthread-wake-wait-ms"].to_str().unwrap().parse().unwrap()
}

/// Waits up to ten seconds for `name` to reach `wanted`.
async fn until_state(s: &Server, name: &str, wanted: &str) -> (String, Option<String>) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = state(s, name).await;
        if now.0 == wanted || tokio::time::Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn wake_and_sleep_on_request_of_an_operator(db: &Db) {
    let s = Server::start(db).await;
    s.project_with_model("ops", "ops-model").await;
    let (manager, _) = s.key(ADMIN, "ops", &["manage"]).await;
    let (reader, _) = s.key(ADMIN, "ops", &["read"]).await;
    let (caller, _) = s.key(ADMIN, "ops", &["inference"]).await;
    assert_eq!(until_state(&s, "ops-model", "staged").await.0, "staged");

    // Waking answers once the model serves.
    let data = s.ok(&manager, WAKE, json!({"i": {"name": "ops-model"}})).await;
    let payload = &data["wakeModel"];
    assert_eq!(payload["userErrors"], json!([]), "{payload}");
    assert_eq!(payload["model"]["runtime"]["state"], "serving");
    assert_eq!(payload["model"]["runtime"]["tier"], "device");
    assert!(payload["model"]["runtime"]["lastWakeMs"].as_f64().unwrap() > 0.0, "{payload}");

    // A request to a serving model waits about nothing, and says so.
    let waited = wake_wait(&s, &caller).await;
    assert!(waited < 50.0, "a serving model waited {waited} ms");

    // Sleeping answers at once; the model is asleep long before its idle timeout.
    let data = s.ok(&manager, SLEEP, json!({"i": {"name": "ops-model"}})).await;
    assert_eq!(data["sleepModel"], json!({"sleepingReplicas": 1, "busyReplicas": 0, "userErrors": []}));
    let (now, tier) = until_state(&s, "ops-model", "sleeping").await;
    assert_eq!((now.as_str(), tier.as_deref()), ("sleeping", Some("ram")));

    // The next request wakes it, and its wait is in the header.
    let waited = wake_wait(&s, &caller).await;
    assert!(waited > 0.0, "{waited}");

    // Read keys may not act, nor inference keys (the model is their own
    // project's: there is nothing to hide); unknown models are not found.
    assert_eq!(s.error_code(&reader, SLEEP, json!({"i": {"name": "ops-model"}})).await, "FORBIDDEN");
    assert_eq!(s.error_code(&caller, SLEEP, json!({"i": {"name": "ops-model"}})).await, "FORBIDDEN");
    assert_eq!(s.error_code(&manager, WAKE, json!({"i": {"name": "nope"}})).await, "NOT_FOUND");

    // A model kept awake by minReplicas is refused, by field, and stays awake.
    let update = "mutation($i: UpdateModelInput!) { updateModel(input: $i) { userErrors { message } } }";
    let data = s.ok(&manager, update, json!({"i": {"name": "ops-model", "scaling": {"minReplicas": 1}}})).await;
    assert_eq!(data["updateModel"]["userErrors"], json!([]));
    assert_eq!(until_state(&s, "ops-model", "serving").await.0, "serving");
    let data = s.ok(&manager, SLEEP, json!({"i": {"name": "ops-model"}})).await;
    let errors = &data["sleepModel"]["userErrors"];
    assert_eq!((errors[0]["field"].as_str(), errors[0]["code"].as_str()), (Some("input.name"), Some("MIN_REPLICAS")));
    assert_eq!(state(&s, "ops-model").await.0, "serving");

    // Both actions are in the audit log, with the key that asked.
    let log = s
        .ok(
            ADMIN,
            "{ auditEvents(filter: {objectType: \"model\"}, first: 20) { nodes { action actor objectName after } } }",
            json!({}),
        )
        .await;
    let actions: Vec<&str> =
        log["auditEvents"]["nodes"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"model.wake") && actions.contains(&"model.sleep"), "{actions:?}");
    let sleep = log["auditEvents"]["nodes"].as_array().unwrap().iter().find(|e| e["action"] == "model.sleep").unwrap();
    assert_eq!(sleep["after"]["sleepingReplicas"], 1);
    assert!(sleep["actor"].as_str().unwrap().starts_with("ops key"), "{sleep}");
}

on_both_databases!(wake_and_sleep_on_request_of_an_operator);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_report_their_device_and_tiers_to_admins_only() {
    let db = Db::sqlite();
    let s = Server::start(&db).await;
    s.project_with_model("n", "n-model").await;
    let data = s
        .ok(ADMIN, "{ nodes { id deviceBudgetBytes deviceUsedBytes tiers { tier budgetBytes usedBytes } } }", json!({}))
        .await;
    let node = &data["nodes"][0];
    assert!(node["deviceBudgetBytes"].as_u64().unwrap() > 0, "{node}");
    let tiers: Vec<&str> = node["tiers"].as_array().unwrap().iter().map(|t| t["tier"].as_str().unwrap()).collect();
    assert_eq!(tiers, ["ram", "disk"], "{node}");
    for t in node["tiers"].as_array().unwrap() {
        assert!(t["usedBytes"].as_u64().unwrap() <= t["budgetBytes"].as_u64().unwrap(), "{t}");
    }
    let (reader, _) = s.key(ADMIN, "n", &["read"]).await;
    assert_eq!(s.error_code(&reader, "{ nodes { id } }", json!({})).await, "FORBIDDEN");
}
