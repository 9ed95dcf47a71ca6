//! What the deploy form reads and writes: the model files the server
//! offers, a project as a document, and that document planned and applied
//! (the same `plan` and `apply` as the GitOps path).

use serde_json::Value;

use super::operations as op;
use super::{UserError, call, count};

#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactRow {
    pub path: String,
    pub bytes: u64,
    /// `GGUF` or `FOLDER`.
    pub format: &'static str,
}

/// The model files and folders under the server's artifact directories.
pub async fn artifacts(key: &str) -> Result<Vec<ArtifactRow>, String> {
    use op::artifacts::ArtifactFormat;
    let data = call::<op::Artifacts>(key, op::artifacts::Variables).await?;
    Ok(data
        .artifacts
        .into_iter()
        .map(|a| ArtifactRow {
            path: a.path,
            bytes: count(a.bytes),
            format: match a.format {
                ArtifactFormat::GGUF => "GGUF",
                _ => "folder",
            },
        })
        .collect())
}

/// `project` as the document `plan` takes.
pub async fn document(key: &str, project: &str) -> Result<Value, String> {
    let variables = op::project_document::Variables { project: project.to_owned() };
    Ok(call::<op::ProjectDocument>(key, variables).await?.project.desired)
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldDiff {
    pub field: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRow {
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub action: String,
    pub address: String,
    pub destructive: bool,
    pub fields: Vec<FieldDiff>,
}

/// A plan: its changes and the etag that applies exactly it.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub changes: Vec<ChangeRow>,
    pub etag: String,
}

/// Why a plan or an apply was refused: the server's field errors, or one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    Fields(Vec<UserError>),
    Failed(String),
}

impl From<String> for Refusal {
    fn from(message: String) -> Self {
        Self::Failed(message)
    }
}

fn user_errors(errors: impl IntoIterator<Item = (String, String)>) -> Vec<UserError> {
    errors
        .into_iter()
        .map(|(field, message)| UserError { field: Some(field).filter(|f| !f.is_empty()), message })
        .collect()
}

/// What applying `desired` would change. Writes nothing.
pub async fn plan(key: &str, desired: &Value) -> Result<Plan, Refusal> {
    let payload = call::<op::PlanDocument>(key, op::plan_document::Variables { desired: desired.clone() }).await?.plan;
    let errors = user_errors(payload.user_errors.into_iter().map(|e| (e.field, e.message)));
    if !errors.is_empty() {
        return Err(Refusal::Fields(errors));
    }
    let changes = payload
        .changes
        .into_iter()
        .map(|c| ChangeRow {
            action: format!("{:?}", c.action),
            address: c.address,
            destructive: c.destructive,
            fields: c
                .fields
                .into_iter()
                .map(|f| FieldDiff { field: f.field, before: f.before, after: f.after })
                .collect(),
        })
        .collect();
    let etag = payload.etag.ok_or_else(|| Refusal::Failed("the server planned without an etag".into()))?;
    Ok(Plan { changes, etag })
}

/// Applies `desired` if the state is still the one `etag` planned on.
pub async fn apply(key: &str, desired: &Value, etag: &str, idempotency_key: &str) -> Result<(), Refusal> {
    let variables = op::apply_document::Variables {
        desired: desired.clone(),
        etag: etag.to_owned(),
        idempotency_key: Some(idempotency_key.to_owned()),
    };
    let payload = call::<op::ApplyDocument>(key, variables).await?.apply;
    let errors = user_errors(payload.user_errors.into_iter().map(|e| (e.field, e.message)));
    match (payload.applied, errors.is_empty()) {
        (true, _) => Ok(()),
        (false, false) => Err(Refusal::Fields(errors)),
        (false, true) => Err(Refusal::Failed("the server did not apply the plan".into())),
    }
}
