//! What a key may do.

use std::fmt;

/// One permission of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Call the project's models.
    Inference,
    /// Read the project through GraphQL.
    Read,
    /// Change the project through GraphQL (reads included).
    Manage,
    /// Read and manage every project; see nodes.
    Admin,
}

impl Scope {
    pub const ALL: [Self; 4] = [Self::Inference, Self::Read, Self::Manage, Self::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inference => "inference",
            Self::Read => "read",
            Self::Manage => "manage",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("unknown scope {0:?}: use inference, read, manage or admin")]
    Unknown(String),
    #[error("a key needs at least one scope")]
    Empty,
}

/// Scopes from their names, sorted and without repeats.
///
/// # Errors
/// [`ScopeError`] for an unknown name or an empty list.
pub fn parse_scopes<S: AsRef<str>>(names: &[S]) -> Result<Vec<Scope>, ScopeError> {
    let mut out = Vec::new();
    for name in names {
        let name = name.as_ref().trim();
        let scope =
            Scope::ALL.into_iter().find(|s| s.as_str() == name).ok_or_else(|| ScopeError::Unknown(name.to_owned()))?;
        out.push(scope);
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(ScopeError::Empty);
    }
    Ok(out)
}

pub(super) fn join(scopes: &[Scope]) -> String {
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_sorted_and_unique() {
        assert_eq!(parse_scopes(&["manage", "inference", "manage"]), Ok(vec![Scope::Inference, Scope::Manage]));
        assert_eq!(parse_scopes(&["root"]), Err(ScopeError::Unknown("root".into())));
        assert_eq!(parse_scopes::<&str>(&[]), Err(ScopeError::Empty));
    }
}
