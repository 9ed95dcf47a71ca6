//! The `Model` custom resource: one GreenThread model declared in
//! Kubernetes, with the same fields as a model in a GitOps document
//! (camelCase, as Kubernetes writes them) and the scheduler's view of it in
//! `status`.

use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of GreenThread's resources.
pub const GROUP: &str = "greenthread.ai";
/// The finalizer that lets a deleted Model drain and leave the database first.
pub const FINALIZER: &str = "greenthread.ai/drain";
/// The field manager GreenThread writes as.
pub const MANAGER: &str = "greenthread-operator";

/// A model GreenThread serves. Its name is the model's name (the `"model"`
/// value clients send); names are unique across the whole platform.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "greenthread.ai",
    version = "v1alpha1",
    kind = "Model",
    root = "ModelResource",
    doc = "A model GreenThread serves, declared in Kubernetes; `status` is the scheduler's view of it.",
    namespaced,
    status = "ModelResourceStatus",
    shortname = "gtm",
    category = "greenthread",
    derive = "PartialEq",
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Tier","type":"string","jsonPath":".status.tier"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".status.replicas"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ModelResourceSpec {
    /// The owning project; the resource's namespace when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The service inside the project; `default` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Where the weights are: an absolute path on the nodes, `file://`, or
    /// an object-store URI (`s3://`, `gs://`, `az://`; a folder ends in `/`).
    #[schemars(length(min = 1))]
    pub artifact: String,
    /// The artifact is refused unless its SHA-256 (hex) matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,
    /// Other names clients may use for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Context window to serve, in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub context_length: Option<u32>,
    /// A Jinja chat template replacing the one in the model file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
    /// What the model does; left out, its artifact decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ModelKindName>,
    /// `0`: sleeps when idle (scale to zero); `1`: stays on the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1))]
    pub min_replicas: Option<u32>,
    /// Most replicas when busy (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_replicas: Option<u32>,
    /// Idle time before it sleeps: `30s`, `5m`, `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub idle_timeout: Option<String>,
    /// Where its weights wait while it sleeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_tier: Option<WarmTierName>,
    /// Never put to sleep to make room for another model.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub never_preempt: bool,
    /// Sequences one replica runs at once; the engine's default when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrency: Option<u32>,
    /// Requests that may wait beyond those running; past it requests are
    /// refused at once as overloaded. Four times the concurrency when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue: Option<u32>,
    /// The engine that serves it; the builtin one when left out. Creating a
    /// Model with an external engine runs a program on the nodes: grant
    /// `create` on Models accordingly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineResource>,
}

/// A model's engine, with the fields of a GitOps document's `engine:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EngineResource {
    /// `builtin`, `llama-server`, `vllm`, `sglang` or `command`.
    #[schemars(regex(pattern = r"^(builtin|llama-server|vllm|sglang|command)$"))]
    pub kind: String,
    /// The program of a preset: an absolute path on the nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    /// Flags a preset adds after its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// A `command` engine's program and arguments (`{artifact}`, `{host}`, `{port}`, `{model}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub env: std::collections::BTreeMap<String, String>,
    /// A `command` engine's readiness path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// `120s`, `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_timeout: Option<String>,
    /// `auto`, `stop` or `engine` (vLLM's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep: Option<String>,
    /// `20GiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_memory: Option<String>,
}

/// `chat`, `embedding`, `asr`, `tts` or `reranker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelKindName {
    Chat,
    Embedding,
    Asr,
    Tts,
    Reranker,
}

impl From<ModelKindName> for greenthread_core::ModelKind {
    fn from(kind: ModelKindName) -> Self {
        match kind {
            ModelKindName::Chat => Self::Chat,
            ModelKindName::Embedding => Self::Embedding,
            ModelKindName::Asr => Self::Asr,
            ModelKindName::Tts => Self::Tts,
            ModelKindName::Reranker => Self::Reranker,
        }
    }
}

impl From<greenthread_core::ModelKind> for ModelKindName {
    fn from(kind: greenthread_core::ModelKind) -> Self {
        match kind {
            greenthread_core::ModelKind::Chat => Self::Chat,
            greenthread_core::ModelKind::Embedding => Self::Embedding,
            greenthread_core::ModelKind::Asr => Self::Asr,
            greenthread_core::ModelKind::Tts => Self::Tts,
            greenthread_core::ModelKind::Reranker => Self::Reranker,
        }
    }
}

/// `ram`, `disk` or `object`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WarmTierName {
    Ram,
    Disk,
    Object,
}

/// What GreenThread reports about a Model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelResourceStatus {
    /// `serving`, `waking`, `sleeping`, `staged`, `fetching`, `draining`, `failed` or `absent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Where its weights are: `device` while awake, else `ram`, `disk` or `object`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Replicas holding device memory.
    #[serde(default)]
    pub replicas: u32,
    #[serde(default)]
    pub device_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_wake_ms: Option<f64>,
    /// The `metadata.generation` last written to the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The database's version of the model (a digest of its spec) at the
    /// last sync: tells a change made through GraphQL from one made here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One aspect of a Model's health, as `kubectl wait --for=condition=…` reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Synced` (the database holds this spec) or `Ready` (it can serve).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    pub message: String,
    /// RFC 3339.
    pub last_transition_time: String,
}

/// Every CRD GreenThread defines, as one multi-document YAML file (what
/// `greenthread crd` prints and `charts/greenthread/crds/` holds).
///
/// # Errors
/// When the CRD cannot be written as YAML (it always can).
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    let model = serde_yaml_ng::to_string(&ModelResource::crd())?;
    Ok(format!("# Generated by `greenthread crd`; do not edit.\n---\n{model}"))
}
