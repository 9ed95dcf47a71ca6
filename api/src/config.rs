//! The `--config` file: a YAML document with a `models:` list.
//!
//! ```yaml
//! models:
//!   - name: qwen2.5-coder-0.5b            # URL slug: /qwen2.5-coder-0.5b/v1/...
//!     artifact: models/qwen.gguf          # path (relative to this file) or file:// URI
//!     sha256: 1d9614638d18…               # optional: refuse the file unless it matches
//!     aliases: [Qwen/Qwen2.5-Coder-0.5B-Instruct]
//!     context_length: 8192                # optional: serve a smaller window
//!     chat_template: "{% for m in messages %}…"   # optional: replaces the file's
//!     project: default                    # optional: owner; device shares are fair between projects
//!     idle_timeout: 5m                    # optional: sleep after this long without requests
//!     min_replicas: 0                     # optional: 0 may sleep, 1 stays on the device
//!     max_replicas: 1                     # optional: most nodes it runs on at once when busy
//!     warm_tier: ram                      # optional: where weights wait asleep (ram, disk, object)
//!     never_preempt: false                # optional: never put to sleep to make room for another
//! ```
//!
//! Unknown keys are errors that name the key and its line.

use std::path::{Path, PathBuf};

use std::time::Duration;

use greenthread_core::units::duration_serde;
use greenthread_core::{
    ArtifactUri, ModelAlias, ModelName, ModelSpec, Scaling, Sha256Digest, WarmTier, default_project, validate_model_set,
};
use serde::Deserialize;

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigDocument {
    #[serde(default)]
    models: Vec<ModelEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelEntry {
    name: ModelName,
    artifact: String,
    #[serde(default)]
    aliases: Vec<ModelAlias>,
    sha256: Option<Sha256Digest>,
    context_length: Option<u32>,
    chat_template: Option<String>,
    project: Option<ModelName>,
    #[serde(default, with = "option_duration")]
    idle_timeout: Option<Duration>,
    min_replicas: Option<u32>,
    max_replicas: Option<u32>,
    warm_tier: Option<WarmTier>,
    #[serde(default)]
    never_preempt: bool,
}

/// `Option<Duration>` written as `"3s"`.
mod option_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::duration_serde")] Duration);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
    }
}

/// The models a config file asks to serve.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub models: Vec<ModelSpec>,
}

impl Config {
    /// Reads and validates the config file at `path`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, and for content errors the key and line.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|message| ConfigError::Invalid { path: path.to_path_buf(), message })
    }

    /// Parses config text; relative artifact paths resolve against `base_dir`.
    ///
    /// # Errors
    /// A message naming the offending key and line.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self, String> {
        let doc: ConfigDocument = serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text))
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner().to_string();
                // The parser already names the entry; add the field it was reading.
                let message = match inner.split_once(": ") {
                    Some((at, rest)) if path != "." && path.starts_with(at) => format!("{path}: {rest}"),
                    _ if path != "." && !inner.starts_with(&path) => format!("{path}: {inner}"),
                    _ => inner,
                };
                with_line(message, text)
            })?;
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let models = doc
            .models
            .into_iter()
            .enumerate()
            .map(|(i, entry)| {
                let artifact = expand_home(&entry.artifact, home.as_deref());
                let artifact = ArtifactUri::parse(&artifact, Some(base_dir))
                    .map_err(|e| format!("models[{i}].artifact ({}): {e}", entry.name))?;
                let defaults = Scaling::default();
                Ok(ModelSpec {
                    name: entry.name,
                    aliases: entry.aliases,
                    artifact,
                    sha256: entry.sha256,
                    context_length: entry.context_length,
                    chat_template: entry.chat_template,
                    project: entry.project.unwrap_or_else(default_project),
                    scaling: Scaling {
                        min_replicas: entry.min_replicas.unwrap_or(defaults.min_replicas),
                        max_replicas: entry
                            .max_replicas
                            .unwrap_or(defaults.max_replicas.max(entry.min_replicas.unwrap_or(0))),
                        idle_timeout: entry.idle_timeout.unwrap_or(defaults.idle_timeout),
                        warm_tier: entry.warm_tier.unwrap_or(defaults.warm_tier),
                        never_preempt: entry.never_preempt,
                    },
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        validate_model_set(&models).map_err(|e| e.to_string())?;
        Ok(Self { models })
    }
}

/// The YAML parser gives no position for keys of the top-level mapping;
/// find an unknown key's line in the text so every such error names it.
fn with_line(message: String, text: &str) -> String {
    if message.contains(" line ") {
        return message;
    }
    let key = message.split("unknown field `").nth(1).and_then(|rest| rest.split('`').next());
    let line = key.and_then(|key| {
        text.lines().position(|l| {
            l.trim_start().trim_start_matches("- ").strip_prefix(key).is_some_and(|r| r.trim_start().starts_with(':'))
        })
    });
    match line {
        Some(i) => format!("{message} at line {}", i + 1),
        None => message,
    }
}

/// `~/x` → `$HOME/x`, as a shell would.
fn expand_home(raw: &str, home: Option<&Path>) -> String {
    match (raw.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => home.join(rest).to_string_lossy().into_owned(),
        _ => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/greenthread"))
    }

    #[test]
    fn a_full_entry_parses_into_a_spec() {
        let cfg = parse(
            "models:\n  - name: qwen\n    artifact: models/q.gguf\n    aliases: [Qwen/Q-0.5B]\n    context_length: 4096\n    sha256: 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32\n",
        )
        .unwrap();
        let m = &cfg.models[0];
        assert_eq!(m.name.as_str(), "qwen");
        assert_eq!(m.artifact.local_path(), Some(Path::new("/etc/greenthread/models/q.gguf")));
        assert_eq!(m.aliases[0].as_str(), "Qwen/Q-0.5B");
        assert_eq!(m.context_length, Some(4096));
        assert!(m.sha256.is_some());
    }

    #[test]
    fn scaling_fields_parse_and_default() {
        let cfg = parse(
            "models:\n  - name: a\n    artifact: a.gguf\n    idle_timeout: 3s\n    min_replicas: 1\n    warm_tier: disk\n    project: team-x\n    never_preempt: true\n  - name: b\n    artifact: b.gguf\n",
        )
        .unwrap();
        let a = &cfg.models[0];
        assert_eq!(a.scaling.idle_timeout, Duration::from_secs(3));
        assert_eq!((a.scaling.min_replicas, a.scaling.warm_tier, a.scaling.never_preempt), (1, WarmTier::Disk, true));
        assert_eq!(a.project.as_str(), "team-x");
        assert_eq!(cfg.models[1].scaling, Scaling::default());
        assert_eq!(cfg.models[1].project, default_project());
    }

    #[test]
    fn bad_scaling_values_are_refused_with_their_line() {
        let err = parse("models:\n  - name: a\n    artifact: a.gguf\n    idle_timeout: soon\n").unwrap_err();
        assert!(err.contains("soon") && err.contains("models[0].idle_timeout"), "{err}");
        let err = parse("models:\n  - name: a\n    artifact: a.gguf\n    warm_tier: gpu\n").unwrap_err();
        assert!(err.contains("gpu"), "{err}");
        let err = parse("models:\n  - name: a\n    artifact: a.gguf\n    min_replicas: 3\n").unwrap_err();
        assert!(err.contains("min_replicas"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let err = parse("models:\n  - name: qwen\n    artifact: q.gguf\n    artefact: typo.gguf\n").unwrap_err();
        assert!(err.contains("artefact"), "{err}");
        assert!(err.contains("line 4"), "{err}");
        let err = parse("modles: []\n").unwrap_err();
        assert!(err.contains("modles") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn bad_names_and_remote_artifacts_are_refused_with_their_place() {
        let err = parse("models:\n  - name: ../etc\n    artifact: q.gguf\n").unwrap_err();
        assert!(err.contains("../etc") && err.contains("line 2"), "{err}");
        let err = parse("models:\n  - name: a\n    artifact: http://10.0.0.1/m.gguf\n").unwrap_err();
        assert!(err.contains("models[0].artifact") && err.contains("not supported"), "{err}");
    }

    #[test]
    fn duplicate_names_across_models_are_refused() {
        let err = parse("models:\n  - {name: a, artifact: a.gguf}\n  - {name: b, artifact: b.gguf, aliases: [a]}\n")
            .unwrap_err();
        assert!(err.contains("both answer to"), "{err}");
    }

    #[test]
    fn home_is_expanded_in_artifact_paths() {
        assert_eq!(expand_home("~/m.gguf", Some(Path::new("/home/u"))), "/home/u/m.gguf");
        assert_eq!(expand_home("/abs/m.gguf", Some(Path::new("/home/u"))), "/abs/m.gguf");
    }
}
