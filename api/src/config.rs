//! The desired-state document: projects, services and models in YAML, as
//! `serve --config` reads it and `greenthread plan|apply -f` sends it. A
//! document is one file or a folder of `*.yaml`/`*.yml` files merged.
//!
//! ```yaml
//! projects:
//!   - name: acme                          # optional when only referenced below
//!     description: Acme's models
//! services:
//!   - project: acme
//!     name: chat
//! models:
//!   - name: qwen2.5-coder-0.5b            # URL slug: /qwen2.5-coder-0.5b/v1/...
//!     project: acme                       # optional: default
//!     service: chat                       # optional: default
//!     artifact: models/qwen.gguf          # path (relative to this file) or file:// URI
//!     sha256: 1d9614638d18…               # optional: refuse the file unless it matches
//!     aliases: [Qwen/Qwen2.5-Coder-0.5B-Instruct]
//!     context_length: 8192                # optional: serve a smaller window
//!     chat_template: "{% for m in messages %}…"   # optional: replaces the file's
//!     kind: chat                          # optional: chat | embedding | asr | tts | reranker (else the artifact's)
//!     idle_timeout: 5m                    # optional: sleep after this long without requests
//!     min_replicas: 0                     # optional: 0 may sleep, 1 stays on the device
//!     max_replicas: 1                     # optional: most nodes it runs on at once when busy
//!     warm_tier: ram                      # optional: where weights wait asleep (ram, disk, object)
//!     never_preempt: false                # optional: never put to sleep to make room for another
//!     max_concurrency: 16                 # optional: sequences a replica runs at once (engine's default)
//!     max_queue: 64                       # optional: requests that may wait; past it, 503 overloaded
//!     engine:                             # optional: builtin unless set (see docs/ENGINES.md)
//!       kind: llama-server                # builtin | llama-server | vllm | sglang | command
//!       binary: /usr/local/bin/llama-server
//!       args: ["-c", "4096"]
//! ```
//!
//! A project or service that is referenced but not declared is declared
//! implicitly, with an empty description. Unknown keys are errors that name
//! the key and its line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use greenthread_core::desired::{ModelDecl, ProjectDecl, ServiceDecl, StateDoc, default_service};
use greenthread_core::engine::EngineSpec;
use greenthread_core::units::duration_serde;
use greenthread_core::{
    ArtifactUri, ModelAlias, ModelKind, ModelName, ModelSpec, ProjectName, Scaling, ServiceName, Sha256Digest,
    WarmTier, default_project, validate_model_set,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// Why a document was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path} holds no *.yaml or *.yml files")]
    Empty { path: PathBuf },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    projects: Vec<ProjectEntry>,
    #[serde(default)]
    services: Vec<ServiceEntry>,
    #[serde(default)]
    models: Vec<ModelEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectEntry {
    name: ProjectName,
    #[serde(default)]
    description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceEntry {
    project: Option<ProjectName>,
    name: ServiceName,
    #[serde(default)]
    description: String,
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
    kind: Option<ModelKind>,
    project: Option<ProjectName>,
    service: Option<ServiceName>,
    #[serde(default, with = "option_duration")]
    idle_timeout: Option<Duration>,
    min_replicas: Option<u32>,
    max_replicas: Option<u32>,
    warm_tier: Option<WarmTier>,
    #[serde(default)]
    never_preempt: bool,
    max_concurrency: Option<u32>,
    max_queue: Option<u32>,
    #[serde(default)]
    engine: EngineSpec,
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

/// The parsed content of a document.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub state: StateDoc,
}

impl Config {
    /// The models the document declares.
    pub fn models(&self) -> Vec<ModelSpec> {
        self.state.models.iter().map(|m| m.spec.clone()).collect()
    }

    /// Reads a document file, or every `*.yaml`/`*.yml` file of a folder
    /// (in name order, merged; a name declared in two files is an error
    /// naming both).
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, and for content errors the key and line.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let read_err = |source| ConfigError::Read { path: path.to_path_buf(), source };
        let files = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(read_err)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml") && p.is_file())
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(ConfigError::Empty { path: path.to_path_buf() });
            }
            files
        } else {
            vec![path.to_path_buf()]
        };
        let mut merged = Document::default();
        let mut origin: BTreeMap<String, PathBuf> = BTreeMap::new();
        for file in &files {
            let text =
                std::fs::read_to_string(file).map_err(|source| ConfigError::Read { path: file.clone(), source })?;
            let base = file.parent().unwrap_or(Path::new("."));
            let invalid = |message| ConfigError::Invalid { path: file.clone(), message };
            let mut doc = parse_document(&text).map_err(invalid)?;
            for m in &mut doc.models {
                m.artifact = resolve_artifact(&m.artifact, base).map_err(|e| ConfigError::Invalid {
                    path: file.clone(),
                    message: format!("model {}: artifact: {e}", m.name),
                })?;
            }
            let keys = doc
                .projects
                .iter()
                .map(|p| format!("project {}", p.name))
                .chain(
                    doc.services
                        .iter()
                        .map(|s| format!("service {}/{}", s.project.clone().unwrap_or_else(default_project), s.name)),
                )
                .chain(doc.models.iter().map(|m| format!("model {}", m.name)));
            for key in keys {
                if let Some(first) = origin.insert(key.clone(), file.clone()) {
                    return Err(ConfigError::Invalid {
                        path: file.clone(),
                        message: format!("{key} is also declared in {}", first.display()),
                    });
                }
            }
            merged.projects.extend(doc.projects);
            merged.services.extend(doc.services);
            merged.models.extend(doc.models);
        }
        into_state(merged)
            .map(|state| Self { state })
            .map_err(|message| ConfigError::Invalid { path: path.to_path_buf(), message })
    }

    /// Parses document text; relative artifact paths resolve against `base_dir`.
    ///
    /// # Errors
    /// A message naming the offending key and line.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self, String> {
        let mut doc = parse_document(text)?;
        for (i, m) in doc.models.iter_mut().enumerate() {
            m.artifact = resolve_artifact(&m.artifact, base_dir)
                .map_err(|e| format!("models[{i}].artifact ({}): {e}", m.name))?;
        }
        into_state(doc).map(|state| Self { state })
    }

    /// Parses a document sent over the API (JSON, the same keys as the YAML).
    /// Artifacts must be absolute paths or URIs: there is no folder to resolve against.
    ///
    /// # Errors
    /// A message naming the offending key.
    pub fn from_json(value: &Value) -> Result<Self, String> {
        let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
        let doc = parse_document(&text)?;
        into_state(doc).map(|state| Self { state })
    }
}

/// A document's JSON form, as `plan` and `apply` take it: absolute artifacts,
/// every project and service declared.
pub fn to_json(state: &StateDoc) -> Value {
    let models: Vec<Value> = state
        .models
        .iter()
        .map(|m| {
            let s = &m.spec;
            let mut v = json!({
                "name": s.name, "project": s.project, "service": m.service, "artifact": s.artifact.to_string(),
                "aliases": s.aliases, "min_replicas": s.scaling.min_replicas, "max_replicas": s.scaling.max_replicas,
                "idle_timeout": greenthread_core::format_duration(s.scaling.idle_timeout),
                "warm_tier": s.scaling.warm_tier, "never_preempt": s.scaling.never_preempt,
            });
            if let Some(n) = s.scaling.max_concurrency {
                v["max_concurrency"] = json!(n);
            }
            if let Some(n) = s.scaling.max_queue {
                v["max_queue"] = json!(n);
            }
            if let Some(d) = &s.sha256 {
                v["sha256"] = json!(d.as_str());
            }
            if let Some(c) = s.context_length {
                v["context_length"] = json!(c);
            }
            if let Some(t) = &s.chat_template {
                v["chat_template"] = json!(t);
            }
            if let Some(k) = s.kind {
                v["kind"] = json!(k);
            }
            if s.engine.is_external() {
                v["engine"] = json!(s.engine);
            }
            v
        })
        .collect();
    json!({ "projects": state.projects, "services": state.services, "models": models })
}

fn parse_document(text: &str) -> Result<Document, String> {
    serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // The parser already names the entry; add the field it was reading.
        let message = match inner.split_once(": ") {
            Some((at, rest)) if path != "." && path.starts_with(at) => format!("{path}: {rest}"),
            _ if path != "." && !inner.starts_with(&path) => format!("{path}: {inner}"),
            _ => inner,
        };
        with_line(message, text)
    })
}

/// An artifact as given, made absolute against the document's folder, with
/// `.` and `..` taken out (symlinks are left as they are).
fn resolve_artifact(raw: &str, base_dir: &Path) -> Result<String, greenthread_core::ArtifactError> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let expanded = expand_home(raw, home.as_deref());
    Ok(match ArtifactUri::parse(&expanded, Some(base_dir))? {
        ArtifactUri::File(path) => ArtifactUri::File(normalize(&path)),
        other => other,
    }
    .to_string())
}

fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn into_state(doc: Document) -> Result<StateDoc, String> {
    let mut state = StateDoc::default();
    let declare_project = |state: &mut StateDoc, name: &ProjectName| {
        if !state.projects.iter().any(|p| &p.name == name) {
            state.projects.push(ProjectDecl { name: name.clone(), description: String::new() });
        }
    };
    for p in doc.projects {
        if state.projects.iter().any(|q| q.name == p.name) {
            return Err(format!("project {} is declared twice", p.name));
        }
        state.projects.push(ProjectDecl { name: p.name, description: p.description });
    }
    for s in doc.services {
        let project = s.project.unwrap_or_else(default_project);
        declare_project(&mut state, &project);
        if state.services.iter().any(|q| q.project == project && q.name == s.name) {
            return Err(format!("service {project}/{} is declared twice", s.name));
        }
        state.services.push(ServiceDecl { project, name: s.name, description: s.description });
    }
    for (i, entry) in doc.models.into_iter().enumerate() {
        let artifact = ArtifactUri::parse(&entry.artifact, None)
            .map_err(|e| format!("models[{i}].artifact ({}): {e}", entry.name))?;
        if state.models.iter().any(|m| m.spec.name == entry.name) {
            return Err(format!("model {} is declared twice", entry.name));
        }
        let project = entry.project.unwrap_or_else(default_project);
        let service = entry.service.unwrap_or_else(default_service);
        declare_project(&mut state, &project);
        if !state.services.iter().any(|s| s.project == project && s.name == service) {
            state.services.push(ServiceDecl {
                project: project.clone(),
                name: service.clone(),
                description: String::new(),
            });
        }
        let defaults = Scaling::default();
        let spec = ModelSpec {
            name: entry.name,
            aliases: entry.aliases,
            artifact,
            sha256: entry.sha256,
            context_length: entry.context_length,
            chat_template: entry.chat_template,
            kind: entry.kind,
            project,
            scaling: Scaling {
                min_replicas: entry.min_replicas.unwrap_or(defaults.min_replicas),
                max_replicas: entry.max_replicas.unwrap_or(defaults.max_replicas.max(entry.min_replicas.unwrap_or(0))),
                idle_timeout: entry.idle_timeout.unwrap_or(defaults.idle_timeout),
                warm_tier: entry.warm_tier.unwrap_or(defaults.warm_tier),
                never_preempt: entry.never_preempt,
                max_concurrency: entry.max_concurrency,
                max_queue: entry.max_queue,
            },
            engine: entry.engine,
        };
        state.models.push(ModelDecl { service, spec });
    }
    let specs: Vec<ModelSpec> = state.models.iter().map(|m| m.spec.clone()).collect();
    validate_model_set(&specs).map_err(|e| e.to_string())?;
    greenthread_core::desired::validate(&state, &[]).map_err(|e| e.to_string())?;
    Ok(state.sorted())
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
        let models = cfg.models();
        let m = &models[0];
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
        let models = cfg.models();
        let a = &models[0];
        assert_eq!(a.scaling.idle_timeout, Duration::from_secs(3));
        assert_eq!((a.scaling.min_replicas, a.scaling.warm_tier, a.scaling.never_preempt), (1, WarmTier::Disk, true));
        assert_eq!(a.project.as_str(), "team-x");
        assert_eq!(models[1].scaling, Scaling::default());
        assert_eq!(models[1].project, default_project());
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
    fn an_engine_parses_checks_and_goes_back_to_json() {
        let cfg = parse(
            "models:\n  - name: ext\n    artifact: q.gguf\n    engine:\n      kind: llama-server\n      binary: /opt/llama-server\n      args: [-c, '4096']\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let spec = &cfg.models()[0];
        assert_eq!(spec.engine.kind(), "llama-server");
        assert_eq!(to_json(&cfg.state)["models"][0]["engine"]["binary"], "/opt/llama-server");
        let builtin = parse("models:\n  - name: b\n    artifact: b.gguf\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(builtin.models()[0].engine.is_builtin());
        assert!(to_json(&builtin.state)["models"][0].get("engine").is_none());
        let err =
            parse("models:\n  - name: ext\n    artifact: q.gguf\n    engine: {kind: command, argv: [srv, '{port}']}\n")
                .unwrap_err();
        assert!(err.contains("engine.argv[0]") && err.contains("engine.argv"), "{err}");
        let err =
            parse("models:\n  - name: ext\n    artifact: q.gguf\n    engine: {kind: command, argv: '/srv {port}'}\n")
                .unwrap_err();
        assert!(err.contains("models[0].engine") && err.contains("line"), "{err}");
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
    fn relative_artifacts_are_resolved_without_dot_dot() {
        let cfg = parse("models:\n  - {name: a, artifact: ../models/./a.gguf}\n").unwrap();
        assert_eq!(cfg.models()[0].artifact.local_path(), Some(Path::new("/etc/models/a.gguf")));
    }

    #[test]
    fn home_is_expanded_in_artifact_paths() {
        assert_eq!(expand_home("~/m.gguf", Some(Path::new("/home/u"))), "/home/u/m.gguf");
        assert_eq!(expand_home("/abs/m.gguf", Some(Path::new("/home/u"))), "/abs/m.gguf");
    }

    #[test]
    fn projects_and_services_are_declared_or_implied() {
        let cfg = parse(
            "projects:\n  - {name: acme, description: Acme}\nservices:\n  - {project: acme, name: chat}\nmodels:\n  - {name: a, project: acme, service: chat, artifact: a.gguf}\n  - {name: b, artifact: b.gguf}\n",
        )
        .unwrap();
        let projects: Vec<(&str, &str)> =
            cfg.state.projects.iter().map(|p| (p.name.as_str(), p.description.as_str())).collect();
        assert_eq!(projects, [("acme", "Acme"), ("default", "")]);
        let services: Vec<String> = cfg.state.services.iter().map(|s| format!("{}/{}", s.project, s.name)).collect();
        assert_eq!(services, ["acme/chat", "default/default"]);
        assert_eq!(cfg.state.models[0].service.as_str(), "chat");
    }

    #[test]
    fn a_model_in_an_undeclared_service_of_a_declared_project_implies_it() {
        let cfg = parse("models:\n  - {name: a, project: p, service: s, artifact: a.gguf}\n").unwrap();
        assert_eq!(cfg.state.services[0].name.as_str(), "s");
    }

    #[test]
    fn the_json_form_round_trips() {
        let cfg =
            parse("models:\n  - {name: a, artifact: a.gguf, aliases: [A/x], idle_timeout: 3s, context_length: 512}\n")
                .unwrap();
        let again = Config::from_json(&to_json(&cfg.state)).unwrap();
        assert_eq!(again.state, cfg.state);
    }

    #[test]
    fn relative_artifacts_are_refused_over_the_api() {
        let err = Config::from_json(&serde_json::json!({"models": [{"name": "a", "artifact": "a.gguf"}]})).unwrap_err();
        assert!(err.contains("models[0].artifact"), "{err}");
        let err = Config::from_json(&serde_json::json!({"modls": []})).unwrap_err();
        assert!(err.contains("modls"), "{err}");
    }

    #[test]
    fn a_folder_merges_its_files_and_names_both_files_of_a_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "models:\n  - {name: a, artifact: a.gguf}\n").unwrap();
        std::fs::write(dir.path().join("b.yml"), "projects:\n  - {name: p}\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not yaml").unwrap();
        let cfg = Config::load(dir.path()).unwrap();
        assert_eq!(cfg.state.projects.len(), 2);
        assert_eq!(cfg.models()[0].artifact.local_path(), Some(dir.path().join("a.gguf").as_path()));
        std::fs::write(dir.path().join("c.yaml"), "models:\n  - {name: a, artifact: other.gguf}\n").unwrap();
        let err = Config::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("a.yaml") && err.contains("c.yaml") && err.contains("model a"), "{err}");
    }
}
