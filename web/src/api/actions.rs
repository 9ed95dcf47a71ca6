//! What the models page does to a model: wake it, put it to sleep, change its scaling.

use serde_json::json;

use super::{Scaling, mutate};

/// Wakes `model`; answers once it serves.
pub async fn wake(key: &str, model: &str) -> Result<(), String> {
    let query = "mutation($i: ModelActionInput!) { wakeModel(input: $i) { userErrors { field message } } }";
    mutate(key, query, "wakeModel", json!({"i": {"name": model}})).await.map(drop)
}

/// Puts `model` to sleep; how many replicas were busy and stay awake for now.
pub async fn sleep(key: &str, model: &str) -> Result<u64, String> {
    let query =
        "mutation($i: ModelActionInput!) { sleepModel(input: $i) { busyReplicas userErrors { field message } } }";
    let payload = mutate(key, query, "sleepModel", json!({"i": {"name": model}})).await?;
    Ok(payload["busyReplicas"].as_u64().unwrap_or(0))
}

/// Sets `model`'s scaling.
pub async fn set_scaling(key: &str, model: &str, scaling: &Scaling) -> Result<(), String> {
    let query = "mutation($i: UpdateModelInput!) { updateModel(input: $i) { userErrors { field message } } }";
    let input = json!({"name": model, "scaling": {
        "minReplicas": scaling.min_replicas, "maxReplicas": scaling.max_replicas,
        "idleTimeout": scaling.idle_timeout, "warmTier": scaling.warm_tier, "neverPreempt": scaling.never_preempt,
    }});
    mutate(key, query, "updateModel", json!({"i": input})).await.map(drop)
}
