//! Admin policy on a project: the object-store prefixes its models may read
//! from (see [`greenthread_store::prefixes`]).

use async_graphql::{Context, InputObject, Object};

use super::errors::{FORBIDDEN, coded, internal, principal};
use super::query::readable_project;
use super::types::{Project, ProjectPayload, management};
use crate::manage::UserError;
use crate::manage::artifacts::normalize_prefix;

/// Most prefixes one project may have.
const MAX_PREFIXES: usize = 64;

#[derive(InputObject)]
pub struct SetArtifactPrefixesInput {
    pub project: String,
    /// Object-store URI prefixes (`s3://bucket/folder/`); the list replaces
    /// the project's, and an empty list allows none.
    pub prefixes: Vec<String>,
}

#[derive(Default)]
pub struct ProjectPolicyMutation;

#[Object]
impl ProjectPolicyMutation {
    /// Sets which object-store prefixes the project's models may read from.
    /// Keys without the admin scope may then point models only there (the
    /// nodes read objects with the server's own credentials). Admin only.
    async fn set_artifact_prefixes(
        &self,
        ctx: &Context<'_>,
        input: SetArtifactPrefixesInput,
    ) -> async_graphql::Result<ProjectPayload> {
        let p = principal(ctx)?;
        if !p.is_admin() {
            return Err(coded(FORBIDDEN, "only an admin key may set a project's artifact prefixes"));
        }
        let row = readable_project(ctx, p, &input.project).await?;
        if input.prefixes.len() > MAX_PREFIXES {
            let message = format!("at most {MAX_PREFIXES} prefixes");
            return Ok(ProjectPayload::failed(vec![UserError::new("input.prefixes", "INVALID", message)]));
        }
        let mut prefixes = Vec::with_capacity(input.prefixes.len());
        let mut errors = Vec::new();
        for (i, raw) in input.prefixes.iter().enumerate() {
            match normalize_prefix(raw) {
                Ok(prefix) => prefixes.push(prefix),
                Err(message) => errors.push(UserError::new(format!("input.prefixes[{i}]"), "INVALID", message)),
            }
        }
        if !errors.is_empty() {
            return Ok(ProjectPayload::failed(errors));
        }
        prefixes.sort();
        prefixes.dedup();
        let mgmt = management(ctx);
        let tx = mgmt.store.begin_write().await.map_err(internal)?;
        let now = mgmt.store.now();
        greenthread_store::prefixes::set(&tx, row.id, &row.name, &prefixes, &p.actor("graphql"), now)
            .await
            .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        Ok(ProjectPayload { project: Some(Project(row)), user_errors: vec![] })
    }
}
