//! GraphQL over `fetch`, with the key as a bearer token, and the queries and
//! mutations the pages use.

pub mod actions;
pub mod admin;
pub mod deploy;
pub mod model_page;
pub mod operations;

use graphql_client::{GraphQLQuery, Response};

use self::operations as op;

/// A mutation's refusal of one input field.
#[derive(Debug, Clone, PartialEq)]
pub struct UserError {
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

/// A payload's `userErrors` (each operation has its own generated type of
/// them) as the error of the first.
macro_rules! refused {
    ($errors:expr) => {
        $crate::api::UserError::first(
            $errors
                .into_iter()
                .map(|e| $crate::api::UserError { field: Some(e.field).filter(|f| !f.is_empty()), message: e.message })
                .collect(),
        )
    };
}
pub(crate) use refused;

/// Runs the operation `Q` as `key`; the first GraphQL error becomes the error message.
pub async fn call<Q: GraphQLQuery>(key: &str, variables: Q::Variables) -> Result<Q::ResponseData, String> {
    let response = gloo_net::http::Request::post("/graphql")
        .header("authorization", &format!("Bearer {key}"))
        .json(&Q::build_query(variables))
        .map_err(|e| e.to_string())?
        .send()
        .await
        .map_err(|e| format!("the server cannot be reached: {e}"))?;
    let answer: Response<Q::ResponseData> = response.json().await.map_err(|e| format!("unexpected answer: {e}"))?;
    if let Some(e) = answer.errors.into_iter().flatten().next() {
        return Err(e.message);
    }
    answer.data.ok_or_else(|| "empty answer".to_owned())
}

/// A count the schema gives as a GraphQL `Int` (never negative).
pub(crate) fn count<T: TryFrom<i64> + Default>(n: i64) -> T {
    T::try_from(n).unwrap_or_default()
}

#[derive(Debug, Clone)]
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
    let data = call::<op::Viewer>(key, op::viewer::Variables).await?;
    Ok(Viewer { scopes: data.viewer.scopes })
}

#[derive(Debug, Clone, PartialEq, Default)]
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

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scaling {
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub idle_timeout: String,
    pub warm_tier: String,
    pub never_preempt: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelRow {
    pub name: String,
    pub project: String,
    pub engine: String,
    /// `chat`, `embedding`, `asr`, `tts` or `reranker`; `None` where the server cannot tell.
    pub kind: Option<&'static str>,
    pub scaling: Scaling,
    pub runtime: Option<Runtime>,
}

/// The models the key may read, with their state on the scheduler.
pub async fn models(key: &str) -> Result<Vec<ModelRow>, String> {
    let data = call::<op::Models>(key, op::models::Variables).await?;
    Ok(data.models.nodes.into_iter().map(ModelRow::from).collect())
}

/// The last lines an external engine wrote (manage scope).
pub async fn model_logs(key: &str, name: &str) -> Result<Vec<String>, String> {
    let data = call::<op::ModelLogs>(key, op::model_logs::Variables { name: name.to_owned() }).await?;
    Ok(data.model.logs)
}

impl From<op::models::ModelsModelsNodes> for ModelRow {
    fn from(m: op::models::ModelsModelsNodes) -> Self {
        let s = m.scaling;
        use op::models::ModelKind;
        let kind = m.kind.map(|k| match k {
            ModelKind::CHAT => "chat",
            ModelKind::EMBEDDING => "embedding",
            ModelKind::ASR => "asr",
            ModelKind::TTS => "tts",
            ModelKind::RERANKER => "reranker",
            ModelKind::Other(_) => "other",
        });
        Self {
            name: m.name,
            project: m.project.name,
            engine: m.engine,
            kind,
            scaling: Scaling {
                min_replicas: count(s.min_replicas),
                max_replicas: count(s.max_replicas),
                idle_timeout: s.idle_timeout,
                warm_tier: s.warm_tier,
                never_preempt: s.never_preempt,
            },
            runtime: m.runtime.map(|r| Runtime {
                state: r.state,
                tier: r.tier,
                failure: r.failure,
                device_bytes: count(r.device_bytes),
                replicas: count(r.replicas),
                in_flight: count(r.in_flight),
                waiting: count(r.waiting),
                last_wake_ms: r.last_wake_ms,
                last_wake_from: r.last_wake_from,
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub hint: String,
    pub project: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    pub expires_at: Option<String>,
    pub limits: Limits,
}

/// A key's bounds; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub requests_per_minute: Option<i64>,
    pub tokens_per_minute: Option<i64>,
    pub max_concurrent_requests: Option<i64>,
}

impl Limits {
    /// "60 requests/min · 10000 tokens/min · 4 at once", or "none".
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            self.requests_per_minute.map(|n| format!("{n} requests/min")),
            self.tokens_per_minute.map(|n| format!("{n} tokens/min")),
            self.max_concurrent_requests.map(|n| format!("{n} at once")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() { "none".into() } else { parts.join(" · ") }
    }
}

/// A key to create.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewKey {
    pub project: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// RFC 3339.
    pub expires_at: Option<String>,
    pub limits: Limits,
}

/// The keys `key` may read, with the projects a new one may go in.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyListing {
    /// The signed-in key's own project, first among `projects`.
    pub project: String,
    pub projects: Vec<String>,
    pub rows: Vec<KeyRow>,
}

/// The signed-in key's project and the keys it may read.
pub async fn keys(key: &str) -> Result<KeyListing, String> {
    let data = call::<op::Keys>(key, op::keys::Variables).await?;
    let rows = data
        .api_keys
        .nodes
        .into_iter()
        .map(|k| KeyRow {
            id: k.id,
            name: k.name,
            hint: k.hint,
            project: k.project.name,
            scopes: k.scopes,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
            expires_at: k.expires_at,
            limits: Limits {
                requests_per_minute: k.requests_per_minute,
                tokens_per_minute: k.tokens_per_minute,
                max_concurrent_requests: k.max_concurrent_requests,
            },
        })
        .collect();
    let project = data.viewer.project.name;
    let mut projects = vec![project.clone()];
    projects.extend(data.projects.nodes.into_iter().map(|p| p.name).filter(|p| *p != project));
    Ok(KeyListing { project, projects, rows })
}

/// Creates a key; its secret, shown this once.
pub async fn create_key(key: &str, new: &NewKey) -> Result<String, String> {
    let input = op::create_api_key::CreateApiKeyInput {
        project: new.project.clone(),
        name: new.name.clone(),
        scopes: new.scopes.clone(),
        expires_at: new.expires_at.clone(),
        requests_per_minute: new.limits.requests_per_minute,
        tokens_per_minute: new.limits.tokens_per_minute,
        max_concurrent_requests: new.limits.max_concurrent_requests,
    };
    let payload = call::<op::CreateApiKey>(key, op::create_api_key::Variables { i: input }).await?.create_api_key;
    refused!(payload.user_errors)?;
    payload.secret.ok_or_else(|| "the server sent no secret".to_owned())
}

/// Revokes the key `id`.
pub async fn revoke_key(key: &str, id: &str) -> Result<(), String> {
    let input = op::revoke_api_key::RevokeApiKeyInput { id: id.to_owned(), ..Default::default() };
    let payload = call::<op::RevokeApiKey>(key, op::revoke_api_key::Variables { i: input }).await?.revoke_api_key;
    refused!(payload.user_errors)
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct UsagePoint {
    pub start: String,
    pub model: Option<String>,
    pub key_id: Option<String>,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Seconds of audio heard.
    pub audio_seconds: f64,
    /// Characters spoken.
    pub characters: u64,
    /// Documents ranked.
    pub documents: u64,
    pub woken: u64,
    pub total_wake_ms: f64,
}

/// Usage since `since` (RFC 3339) in `bucket`s (`MINUTE`, `HOUR`), grouped by `MODEL` or `KEY`.
pub async fn usage(key: &str, since: &str, group_by: &str, bucket: &str) -> Result<Vec<UsagePoint>, String> {
    use op::usage::{UsageBucket, UsageGroup, Variables};
    let group = if group_by == "KEY" { UsageGroup::KEY } else { UsageGroup::MODEL };
    let bucket = match bucket {
        "MINUTE" => UsageBucket::MINUTE,
        "DAY" => UsageBucket::DAY,
        _ => UsageBucket::HOUR,
    };
    let data = call::<op::Usage>(key, Variables { since: since.to_owned(), group, bucket }).await?;
    Ok(data
        .usage
        .into_iter()
        .map(|p| UsagePoint {
            start: p.start,
            model: p.model,
            key_id: p.key_id,
            requests: count(p.requests),
            input_tokens: count(p.input_tokens),
            output_tokens: count(p.output_tokens),
            audio_seconds: p.audio_seconds,
            characters: count(p.characters),
            documents: count(p.documents),
            woken: count(p.woken),
            total_wake_ms: p.total_wake_ms,
        })
        .collect())
}
