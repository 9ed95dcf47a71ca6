//! Where a model's weights come from, and the digest they must have.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why an artifact reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact must not be empty")]
    Empty,
    #[error(
        "artifact scheme {scheme:?} is not supported; use a local path, a file:// URI, or object storage (s3://, gs://, az://)"
    )]
    UnsupportedScheme { scheme: String },
    #[error("object storage URI {0:?} must name a bucket and a key")]
    IncompleteObjectUri(String),
    #[error(
        "object storage URIs may not carry credentials (user info or a query string); the server takes them from its environment"
    )]
    CredentialsInUri,
    #[error("file:// URI {0:?} must hold an absolute path (file:///path/to/model.gguf)")]
    RelativeFileUri(String),
    #[error("artifact path {0:?} must be absolute here: there is no folder to resolve it against")]
    RelativePath(String),
    #[error("sha256 must be 64 hexadecimal characters, got {0:?}")]
    BadDigest(String),
}

/// Object storage schemes an artifact may live under.
const OBJECT_SCHEMES: &[&str] = &["s3", "gs", "az", "azure", "abfs", "abfss"];

/// A model artifact: a file on the node's filesystem, or an object in
/// S3, GCS or Azure storage (credentials from the environment).
///
/// Plain `http(s)://` and other schemes are refused at parse time, so no
/// request or config entry can make the server open a connection to an
/// arbitrary address it names (no SSRF).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum ArtifactUri {
    File(PathBuf),
    Object(String),
}

impl ArtifactUri {
    /// Parses `raw` as a path or `file://` URI; a relative path is taken
    /// relative to `base_dir` (the directory of the config file that named
    /// it), and refused without one.
    ///
    /// # Errors
    /// An [`ArtifactError`] for empty input, a relative `file://` URI, or any other scheme.
    pub fn parse(raw: &str, base_dir: Option<&Path>) -> Result<Self, ArtifactError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(ArtifactError::Empty);
        }
        if let Some(rest) = raw.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(ArtifactError::RelativeFileUri(raw.to_owned()));
            }
            return Ok(Self::File(PathBuf::from(rest)));
        }
        if let Some((scheme, rest)) = raw.split_once("://") {
            if !OBJECT_SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
                return Err(ArtifactError::UnsupportedScheme { scheme: scheme.to_owned() });
            }
            let authority = rest.split('/').next().unwrap_or_default();
            if authority.contains('@') || rest.contains(['?', '#']) {
                return Err(ArtifactError::CredentialsInUri);
            }
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() || key.is_empty() || key.split('/').any(dot_segment) {
                return Err(ArtifactError::IncompleteObjectUri(raw.to_owned()));
            }
            return Ok(Self::Object(raw.to_owned()));
        }
        let path = Path::new(raw);
        let path = match base_dir {
            Some(base) if path.is_relative() => base.join(path),
            None if path.is_relative() => return Err(ArtifactError::RelativePath(raw.to_owned())),
            _ => path.to_path_buf(),
        };
        Ok(Self::File(path))
    }

    /// The local file, for `file://` artifacts.
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            Self::File(path) => Some(path),
            Self::Object(_) => None,
        }
    }
}

/// Whether a key's path segment is `.` or `..`, also when spelled with
/// percent escapes (`%2e%2E`) or holding an escaped `/` or `\`: URL parsers
/// decode these, so a prefix check on the raw text could be walked out of.
fn dot_segment(segment: &str) -> bool {
    let lower = segment.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return true;
    }
    let decoded = lower.replace("%2e", ".");
    decoded == "." || decoded == ".."
}

impl fmt::Display for ArtifactUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "file://{}", path.display()),
            Self::Object(url) => f.write_str(url),
        }
    }
}

impl<'de> Deserialize<'de> for ArtifactUri {
    /// Absolute paths and URIs only: there is no directory to resolve a relative path against.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        let parsed = Self::parse(&raw, None).map_err(serde::de::Error::custom)?;
        match &parsed {
            Self::File(p) if p.is_relative() => {
                Err(serde::de::Error::custom(format!("artifact path {raw:?} must be absolute")))
            }
            _ => Ok(parsed),
        }
    }
}

impl From<ArtifactUri> for String {
    fn from(uri: ArtifactUri) -> Self {
        uri.to_string()
    }
}

/// A SHA-256 digest, lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Sha256Digest(String);

impl Sha256Digest {
    /// Parses 64 hex characters (either case; stored lowercase).
    ///
    /// # Errors
    /// [`ArtifactError::BadDigest`] for anything else.
    pub fn parse(raw: &str) -> Result<Self, ArtifactError> {
        let raw = raw.trim();
        if raw.len() == 64 && raw.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(Self(raw.to_ascii_lowercase()))
        } else {
            Err(ArtifactError::BadDigest(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let uri = ArtifactUri::parse("models/a.gguf", Some(Path::new("/etc/gt"))).ok();
        assert_eq!(uri, Some(ArtifactUri::File(PathBuf::from("/etc/gt/models/a.gguf"))));
        let abs = ArtifactUri::parse("/m/a.gguf", Some(Path::new("/etc/gt"))).ok();
        assert_eq!(abs, Some(ArtifactUri::File(PathBuf::from("/m/a.gguf"))));
    }

    #[test]
    fn file_uris_must_be_absolute() {
        assert_eq!(
            ArtifactUri::parse("file:///m/a.gguf", None).ok(),
            Some(ArtifactUri::File(PathBuf::from("/m/a.gguf")))
        );
        assert!(matches!(ArtifactUri::parse("file://m/a.gguf", None), Err(ArtifactError::RelativeFileUri(_))));
        assert!(matches!(ArtifactUri::parse("m/a.gguf", None), Err(ArtifactError::RelativePath(_))));
    }

    #[test]
    fn object_storage_uris_are_accepted_with_a_bucket_and_key() {
        assert_eq!(
            ArtifactUri::parse("s3://models/qwen/q.gguf", None),
            Ok(ArtifactUri::Object("s3://models/qwen/q.gguf".into()))
        );
        assert!(ArtifactUri::parse("gs://bucket/a.gguf", None).is_ok());
        for bad in [
            "s3://bucket",
            "s3:///key",
            "s3://b/../etc/passwd",
            "s3://b/team-a/%2e%2e/team-b/m.gguf",
            "s3://b/team-a/%2E./m.gguf",
            "s3://b/team-a/./m.gguf",
            "s3://b/team-a%2f..%2fteam-b/m.gguf",
        ] {
            assert!(matches!(ArtifactUri::parse(bad, None), Err(ArtifactError::IncompleteObjectUri(_))), "{bad}");
        }
    }

    #[test]
    fn credentials_in_object_uris_are_refused() {
        for raw in ["s3://user:pass@bucket/m.gguf", "gs://token@bucket/m.gguf", "az://c/m.gguf?sig=abc", "s3://b/m#x"] {
            assert_eq!(ArtifactUri::parse(raw, None), Err(ArtifactError::CredentialsInUri), "{raw}");
        }
        let message = ArtifactUri::parse("s3://user:pass@bucket/m.gguf", None).unwrap_err().to_string();
        assert!(!message.contains("pass"), "{message}");
    }

    #[test]
    fn web_and_other_schemes_are_refused_so_no_artifact_can_reach_an_arbitrary_address() {
        for raw in ["http://169.254.169.254/latest", "https://x/y.gguf", "ftp://b/k", "gopher://x"] {
            assert!(matches!(ArtifactUri::parse(raw, None), Err(ArtifactError::UnsupportedScheme { .. })), "{raw}");
        }
    }

    #[test]
    fn digests_are_64_hex_characters() {
        let d = "1D9614638D18024D0FBB36575A15F1302A3ADF044DF10345688EC4F6E1C4FF32";
        assert_eq!(Sha256Digest::parse(d).map(|d| d.to_string()), Ok(d.to_ascii_lowercase()));
        assert!(Sha256Digest::parse("abc").is_err());
        assert!(Sha256Digest::parse(&"g".repeat(64)).is_err());
    }
}
