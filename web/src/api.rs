//! GraphQL over `fetch`, with the key as a bearer token, and the queries and
//! mutations the pages use.

pub mod actions;
pub mod admin;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Answer<T> {
    data: Option<T>,
    #[serde(default)]
    errors: Vec<GraphqlError>,
}

#[derive(Deserialize)]
struct GraphqlError {
    message: String,
}

/// A mutation's refusal of one input field.
#[derive(Debug, Clone, Deserialize)]
pub struct UserError {
    #[serde(default)]
    pub field: Option<String>,
    pub message: String,
}

impl UserError {
    /// The first refusal as the error message, naming its field.
    pub fn first(errors: Vec<Self>) -> Result<(), String> {
        match errors.into_iter().next() {
            None => Ok(()),
            Some(Self { field: Some(f), message }) => Err(format!("{}: {message}", f.trim_start_matches("input."))),
            Some(Self { field: None, message }) => Err(message),
        }
    }
}

/// Runs `query` as `key`; the first GraphQL error becomes the error message.
pub async fn graphql<T: DeserializeOwned>(key: &str, query: &str, variables: Value) -> Result<T, String> {
    let response = gloo_net::http::Request::post("/graphql")
        .header("authorization", &format!("Bearer {key}"))
        .json(&json!({"query": query, "variables": variables}))
        .map_err(|e| e.to_string())?
        .send()
        .await
        .map_err(|e| format!("the server cannot be reached: {e}"))?;
    let answer: Answer<T> = response.json().await.map_err(|e| format!("unexpected answer: {e}"))?;
    if let Some(e) = answer.errors.into_iter().next() {
        return Err(e.message);
    }
    answer.data.ok_or_else(|| "empty answer".to_owned())
}

/// Runs a mutation and returns its payload (the object under `field`), or
/// the payload's first `userErrors` entry as the error.
pub async fn mutate(key: &str, query: &str, field: &str, variables: Value) -> Result<Value, String> {
    let mut data: Value = graphql(key, query, variables).await?;
    let payload = data[field].take();
    let errors: Vec<UserError> = serde_json::from_value(payload["userErrors"].clone()).unwrap_or_default();
    UserError::first(errors)?;
    Ok(payload)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Viewer {
    pub scopes: Vec<String>,
}

impl Viewer {
    pub fn is_admin(&self) -> bool {
        self.scopes.iter().any(|s| s == "admin")
    }

    pub fn may_manage(&self) -> bool {
        self.scopes.iter().any(|s| s == "admin" || s == "manage")
    }
}

/// Who `key` is; fails for an unknown, revoked or expired key.
pub async fn viewer(key: &str) -> Result<Viewer, String> {
    #[derive(Deserialize)]
    struct Data {
        viewer: Viewer,
    }
    let data: Data = graphql(key, "{ viewer { scopes } }", json!({})).await?;
    Ok(data.viewer)
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Runtime {
    pub state: String,
    pub tier: Option<String>,
    pub failure: Option<String>,
    pub device_bytes: u64,
    pub replicas: u32,
    pub in_flight: u32,
    pub waiting: u32,
    pub last_wake_ms: Option<f64>,
    pub last_wake_from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scaling {
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub idle_timeout: String,
    pub warm_tier: String,
    pub never_preempt: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelRow {
    pub name: String,
    pub engine: String,
    pub scaling: Scaling,
    pub runtime: Option<Runtime>,
}

/// The models the key may read, with their state on the scheduler.
pub async fn models(key: &str) -> Result<Vec<ModelRow>, String> {
    #[derive(Deserialize)]
    struct Connection {
        nodes: Vec<ModelRow>,
    }
    #[derive(Deserialize)]
    struct Data {
        models: Connection,
    }
    let query = "{ models(first: 100) { nodes { name engine
                   scaling { minReplicas maxReplicas idleTimeout warmTier neverPreempt }
                   runtime { state tier failure deviceBytes replicas inFlight waiting lastWakeMs lastWakeFrom } } } }";
    let data: Data = graphql(key, query, json!({})).await?;
    Ok(data.models.nodes)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub hint: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// The signed-in key's project and the keys it may read.
pub async fn keys(key: &str) -> Result<(String, Vec<KeyRow>), String> {
    #[derive(Deserialize)]
    struct Project {
        name: String,
    }
    #[derive(Deserialize)]
    struct ViewerProject {
        project: Project,
    }
    #[derive(Deserialize)]
    struct Connection {
        nodes: Vec<KeyRow>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Data {
        viewer: ViewerProject,
        api_keys: Connection,
    }
    let query = "{ viewer { project { name } } apiKeys(first: 100) { nodes { id name hint scopes createdAt lastUsedAt revokedAt } } }";
    let data: Data = graphql(key, query, json!({})).await?;
    Ok((data.viewer.project.name, data.api_keys.nodes))
}

/// Creates a key in `project`; its secret, shown this once.
pub async fn create_key(key: &str, project: &str, name: &str, scopes: &[String]) -> Result<String, String> {
    let query = "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret userErrors { field message } } }";
    let vars = json!({"i": {"project": project, "name": name, "scopes": scopes}});
    let payload = mutate(key, query, "createApiKey", vars).await?;
    payload["secret"].as_str().map(str::to_owned).ok_or_else(|| "the server sent no secret".to_owned())
}

/// Revokes the key `id`.
pub async fn revoke_key(key: &str, id: &str) -> Result<(), String> {
    let query = "mutation($i: RevokeApiKeyInput!) { revokeApiKey(input: $i) { userErrors { field message } } }";
    mutate(key, query, "revokeApiKey", json!({"i": {"id": id}})).await.map(drop)
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsagePoint {
    pub start: String,
    pub model: Option<String>,
    pub key_id: Option<String>,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub woken: u64,
    pub total_wake_ms: f64,
}

/// Usage since `since` (RFC 3339) in `bucket`s (`MINUTE`, `HOUR`), grouped by `MODEL` or `KEY`.
pub async fn usage(key: &str, since: &str, group_by: &str, bucket: &str) -> Result<Vec<UsagePoint>, String> {
    #[derive(Deserialize)]
    struct Data {
        usage: Vec<UsagePoint>,
    }
    let query = "query($since: DateTime!, $group: UsageGroup!, $bucket: UsageBucket!) {
                   usage(since: $since, bucket: $bucket, groupBy: $group) {
                   start model keyId requests inputTokens outputTokens woken totalWakeMs } }";
    let data: Data = graphql(key, query, json!({"since": since, "group": group_by, "bucket": bucket})).await?;
    Ok(data.usage)
}
