//! What the models page does to a model: wake it, put it to sleep, change its scaling.

use serde::Deserialize;
use serde_json::json;

use super::{Scaling, UserError, graphql};

/// Wakes `model`; answers once it serves.
pub async fn wake(key: &str, model: &str) -> Result<(), String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload {
        user_errors: Vec<UserError>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Data {
        wake_model: Payload,
    }
    let query = "mutation($i: ModelActionInput!) { wakeModel(input: $i) { userErrors { field message } } }";
    let data: Data = graphql(key, query, json!({"i": {"name": model}})).await?;
    UserError::first(data.wake_model.user_errors)
}

/// Puts `model` to sleep; how many replicas were busy and stay awake for now.
pub async fn sleep(key: &str, model: &str) -> Result<u32, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload {
        busy_replicas: u32,
        user_errors: Vec<UserError>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Data {
        sleep_model: Payload,
    }
    let query =
        "mutation($i: ModelActionInput!) { sleepModel(input: $i) { busyReplicas userErrors { field message } } }";
    let data: Data = graphql(key, query, json!({"i": {"name": model}})).await?;
    UserError::first(data.sleep_model.user_errors)?;
    Ok(data.sleep_model.busy_replicas)
}

/// Sets `model`'s scaling.
pub async fn set_scaling(key: &str, model: &str, scaling: &Scaling) -> Result<(), String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload {
        user_errors: Vec<UserError>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Data {
        update_model: Payload,
    }
    let query = "mutation($i: UpdateModelInput!) { updateModel(input: $i) { userErrors { field message } } }";
    let input = json!({"name": model, "scaling": {
        "minReplicas": scaling.min_replicas, "maxReplicas": scaling.max_replicas,
        "idleTimeout": scaling.idle_timeout, "warmTier": scaling.warm_tier, "neverPreempt": scaling.never_preempt,
    }});
    let data: Data = graphql(key, query, json!({"i": input})).await?;
    UserError::first(data.update_model.user_errors)
}
