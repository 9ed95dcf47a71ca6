//! Model names (URL slugs that appear in per-model URLs) and aliases (free-form ids
//! such as an upstream Hugging Face repository name).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest accepted model name, in bytes: a DNS label's 63, so a name also
/// fits a Kubernetes label value and a hostname, and every database column
/// that holds one (`VARCHAR(63)`).
pub const MAX_NAME_LEN: usize = 63;
/// Longest accepted alias, in bytes: long enough for `org/repo-name-variant` ids.
pub const MAX_ALIAS_LEN: usize = 200;

/// Path segments that routes of the server itself use; a model may not take them.
const RESERVED_NAMES: &[&str] =
    &["v1", "api", "health", "healthz", "ready", "status", "metrics", "graphql", "console", "ui", "static", "assets"];

/// Why a model name or alias was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("is {len} bytes long; the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error(
        "may contain only lowercase letters, digits, '-', '_' and '.', and must start with a letter or digit (found {found:?})"
    )]
    InvalidCharacter { found: char },
    #[error("{0:?} is reserved for the server's own routes")]
    Reserved(String),
    #[error("must not contain whitespace or control characters")]
    Unprintable,
}

/// Checks a slug: the rules every name of this module follows.
fn parse_slug(raw: &str) -> Result<String, NameError> {
    if raw.is_empty() {
        return Err(NameError::Empty);
    }
    if raw.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: raw.len(), max: MAX_NAME_LEN });
    }
    let mut chars = raw.chars();
    let first = chars.next().unwrap_or_default();
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(NameError::InvalidCharacter { found: first });
    }
    if let Some(bad) = chars.find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(*c))) {
        return Err(NameError::InvalidCharacter { found: bad });
    }
    if RESERVED_NAMES.contains(&raw) {
        return Err(NameError::Reserved(raw.to_owned()));
    }
    Ok(raw.to_owned())
}

/// A name that is a lowercase URL slug, as its own type: one meaning per name.
macro_rules! slug {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            #[doc = concat!("Parses a ", $what, " name.")]
            ///
            /// # Errors
            /// A [`NameError`] when the name is empty, too long, reserved, or holds
            /// characters outside `[a-z0-9._-]` (this rules out path traversal through a name).
            pub fn parse(raw: &str) -> Result<Self, NameError> {
                parse_slug(raw).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(|e| serde::de::Error::custom(format!(concat!($what, " name {:?} {}"), raw, e)))
            }
        }
    };
}

slug!(
    /// A model's name: unique on a server, used in `/<name>/v1/...` and as
    /// the `"model"` value of requests.
    ModelName,
    "model"
);
slug!(
    /// A project's name: what keys, models and usage belong to.
    ProjectName,
    "project"
);
slug!(
    /// A service's name, unique inside its project: a group of models a custom domain routes to.
    ServiceName,
    "service"
);
slug!(
    /// A node's id (`gpu-node-1`).
    NodeId,
    "node"
);

/// Another id a model answers to in the `"model"` field, e.g.
/// `Qwen/Qwen2.5-Coder-0.5B-Instruct`. Never used in a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ModelAlias(String);

impl ModelAlias {
    /// Parses an alias.
    ///
    /// # Errors
    /// A [`NameError`] when it is empty, too long, or holds whitespace or control characters.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        if raw.len() > MAX_ALIAS_LEN {
            return Err(NameError::TooLong { len: raw.len(), max: MAX_ALIAS_LEN });
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(NameError::Unprintable);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModelAlias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ModelAlias {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(|e| serde::de::Error::custom(format!("model alias {raw:?} {e}")))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_ordinary_slugs() {
        for ok in ["qwen2.5-coder-0.5b", "gemma3_270m", "7b", "a"] {
            assert_eq!(ModelName::parse(ok).map(|n| n.to_string()), Ok(ok.to_owned()));
        }
    }

    #[test]
    fn refuses_names_that_could_escape_a_path_or_shadow_a_route() {
        assert_eq!(ModelName::parse("../etc"), Err(NameError::InvalidCharacter { found: '.' }));
        assert_eq!(ModelName::parse("a/b"), Err(NameError::InvalidCharacter { found: '/' }));
        assert_eq!(ModelName::parse("Qwen"), Err(NameError::InvalidCharacter { found: 'Q' }));
        assert_eq!(ModelName::parse(""), Err(NameError::Empty));
        assert_eq!(ModelName::parse("v1"), Err(NameError::Reserved("v1".into())));
        assert!(matches!(ModelName::parse(&"x".repeat(64)), Err(NameError::TooLong { .. })));
        assert!(ModelName::parse(&"x".repeat(63)).is_ok(), "a DNS label's length fits");
    }

    #[test]
    fn aliases_may_be_hub_ids_but_not_blank() {
        assert!(ModelAlias::parse("Qwen/Qwen2.5-Coder-0.5B-Instruct").is_ok());
        assert_eq!(ModelAlias::parse("a b"), Err(NameError::Unprintable));
        assert_eq!(ModelAlias::parse(""), Err(NameError::Empty));
    }

    proptest! {
        #[test]
        fn every_accepted_name_is_a_single_safe_path_segment(raw in "\\PC{0,80}") {
            if let Ok(name) = ModelName::parse(&raw) {
                prop_assert!(!name.as_str().contains('/'));
                prop_assert!(!name.as_str().starts_with('.'));
                prop_assert!(name.as_str().len() <= MAX_NAME_LEN);
            }
        }
    }
}
