//! Who is asking, and what they may touch.

use greenthread_core::ProjectName;
use uuid::Uuid;

use super::{AuthError, Scope};
use crate::Actor;
use crate::entities::{api_key, project};

/// The caller behind a request: a key, its project and scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: Uuid,
    pub key_name: String,
    pub key_hint: String,
    pub project_id: Uuid,
    pub project: ProjectName,
    pub scopes: Vec<Scope>,
    pub limits: crate::ratelimit::KeyLimits,
}

impl Principal {
    pub(super) fn from_row(row: &api_key::Model, project: project::Model) -> Result<Self, AuthError> {
        let scopes = super::parse_scopes(&row.scopes.split(' ').collect::<Vec<_>>()).map_err(|_| AuthError::Invalid)?;
        let project_name = ProjectName::parse(&project.name).map_err(|_| AuthError::Invalid)?;
        Ok(Self {
            key_id: row.id,
            key_name: row.name.clone(),
            key_hint: row.secret_hint.clone(),
            project_id: project.id,
            project: project_name,
            scopes,
            limits: crate::ratelimit::KeyLimits {
                requests_per_minute: row.requests_per_minute.and_then(|n| u32::try_from(n).ok()),
                tokens_per_minute: row.tokens_per_minute.and_then(|n| u32::try_from(n).ok()),
                max_concurrent_requests: row.max_concurrent_requests.and_then(|n| u32::try_from(n).ok()),
            },
        })
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    pub fn is_admin(&self) -> bool {
        self.has(Scope::Admin)
    }

    /// May read `project` through GraphQL.
    pub fn can_read(&self, project: Uuid) -> bool {
        self.is_admin() || (project == self.project_id && (self.has(Scope::Read) || self.has(Scope::Manage)))
    }

    /// May change `project` through GraphQL.
    pub fn can_manage(&self, project: Uuid) -> bool {
        self.is_admin() || (project == self.project_id && self.has(Scope::Manage))
    }

    /// May call models of `project`.
    pub fn can_call(&self, project: &ProjectName) -> bool {
        self.has(Scope::Inference) && *project == self.project
    }

    /// The projects whose data this caller may read; `None` for all of them.
    pub fn readable_projects(&self) -> Option<Vec<Uuid>> {
        if self.is_admin() { None } else { Some(vec![self.project_id]) }
    }

    /// As the audit log records it.
    pub fn actor(&self, via: &'static str) -> Actor {
        Actor { key_id: Some(self.key_id), name: format!("{} ({})", self.key_name, self.key_hint), via }
    }
}
