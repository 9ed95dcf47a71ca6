//! What a deploy form offers: the model files under the server's artifact
//! directories, and a project as the document `plan` and `apply` take.

use async_graphql::{Context, Enum, Object, SimpleObject};

use super::errors::{FORBIDDEN, coded, internal, principal};
use super::types::management;
use crate::manage::artifacts::{ArtifactFile as Listed, ArtifactFormat as ListedFormat};
use greenthread_store::auth::Scope;

/// Most files one listing returns.
const MAX_ARTIFACTS: usize = 1_000;

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactFormat {
    /// One GGUF file.
    Gguf,
    /// A model folder: `config.json` beside safetensors or ONNX weights.
    Folder,
}

/// A model file or folder a model may be deployed from.
#[derive(SimpleObject)]
pub struct ArtifactFile {
    /// The absolute path, as a model's `artifact`.
    pub path: String,
    /// Its size, or the sum of a folder's files.
    pub bytes: u64,
    pub format: ArtifactFormat,
}

impl From<Listed> for ArtifactFile {
    fn from(f: Listed) -> Self {
        Self {
            path: f.path.to_string_lossy().into_owned(),
            bytes: f.bytes,
            format: match f.format {
                ListedFormat::Gguf => ArtifactFormat::Gguf,
                ListedFormat::Folder => ArtifactFormat::Folder,
            },
        }
    }
}

#[derive(Default)]
pub struct ArtifactQuery;

#[Object]
impl ArtifactQuery {
    /// The GGUF files and model folders in the server's artifact
    /// directories (`--artifact-dir`) on this machine, by path: what a
    /// model created through the API may name besides object-store URIs.
    /// Keys that may manage a project only.
    async fn artifacts(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ArtifactFile>> {
        let p = principal(ctx)?;
        if !(p.is_admin() || p.has(Scope::Manage)) {
            return Err(coded(FORBIDDEN, "listing artifacts needs a manage or admin key"));
        }
        let policy = management(ctx).artifacts.clone();
        let listed = tokio::task::spawn_blocking(move || policy.listing(MAX_ARTIFACTS)).await.map_err(internal)?;
        Ok(listed.into_iter().map(ArtifactFile::from).collect())
    }
}
