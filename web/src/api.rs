//! GraphQL over `fetch`, with the key as a bearer token.

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

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Viewer {
    pub scopes: Vec<String>,
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Runtime {
    pub state: String,
    pub tier: Option<String>,
    pub device_bytes: u64,
    pub replicas: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelRow {
    pub name: String,
    pub engine: String,
    pub runtime: Option<Runtime>,
}

/// The models the key may read, with their state on the scheduler.
pub async fn models(key: &str) -> Result<Vec<ModelRow>, String> {
    #[derive(Deserialize)]
    struct Edge {
        node: ModelRow,
    }
    #[derive(Deserialize)]
    struct Connection {
        edges: Vec<Edge>,
    }
    #[derive(Deserialize)]
    struct Data {
        models: Connection,
    }
    let query = "{ models(first: 100) { edges { node { name engine runtime { state tier deviceBytes replicas } } } } }";
    let data: Data = graphql(key, query, json!({})).await?;
    Ok(data.models.edges.into_iter().map(|e| e.node).collect())
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

#[derive(Deserialize)]
struct UserError {
    message: String,
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
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload {
        secret: Option<String>,
        user_errors: Vec<UserError>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Data {
        create_api_key: Payload,
    }
    let query = "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret userErrors { message } } }";
    let vars = json!({"i": {"project": project, "name": name, "scopes": scopes}});
    let data: Data = graphql(key, query, vars).await?;
    if let Some(e) = data.create_api_key.user_errors.into_iter().next() {
        return Err(e.message);
    }
    data.create_api_key.secret.ok_or_else(|| "the server sent no secret".to_owned())
}

/// Revokes the key `id`.
pub async fn revoke_key(key: &str, id: &str) -> Result<(), String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload {
        user_errors: Vec<UserError>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Data {
        revoke_api_key: Payload,
    }
    let query = "mutation($i: RevokeApiKeyInput!) { revokeApiKey(input: $i) { userErrors { message } } }";
    let data: Data = graphql(key, query, json!({"i": {"id": id}})).await?;
    match data.revoke_api_key.user_errors.into_iter().next() {
        Some(e) => Err(e.message),
        None => Ok(()),
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsagePoint {
    pub start: String,
    pub model: Option<String>,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub woken: u64,
    pub total_wake_ms: f64,
}

/// Usage per minute and model since `since` (RFC 3339).
pub async fn usage(key: &str, since: &str) -> Result<Vec<UsagePoint>, String> {
    #[derive(Deserialize)]
    struct Data {
        usage: Vec<UsagePoint>,
    }
    let query = "query($since: DateTime!) { usage(since: $since, bucket: MINUTE, groupBy: MODEL) { start model requests inputTokens outputTokens woken totalWakeMs } }";
    let data: Data = graphql(key, query, json!({"since": since})).await?;
    Ok(data.usage)
}
