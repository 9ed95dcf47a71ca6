//! A model's deployment spec, and the rules a set of specs must keep together.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::{EngineError, EngineSpec};
use crate::model_kind::ModelKind;
use crate::units::duration_serde;
use crate::{ArtifactUri, ModelAlias, ModelName, ProjectName, Sha256Digest, WarmTier};

/// How long an idle model keeps its device memory by default: long enough
/// that a conversation's next turn finds it awake, short enough that an idle
/// model does not hold a GPU for long.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The project a model belongs to when its spec names none.
pub const DEFAULT_PROJECT: &str = "default";

/// When a model holds device memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scaling {
    /// `0`: may sleep (scale to zero); `1`: stays on the device.
    pub min_replicas: u32,
    /// Most nodes it runs on at once when busy (at least 1).
    pub max_replicas: u32,
    /// Idle time after which it sleeps.
    #[serde(with = "duration_serde")]
    pub idle_timeout: Duration,
    /// Where its weights wait while it sleeps.
    pub warm_tier: WarmTier,
    /// Never chosen as a victim to make room for another model.
    pub never_preempt: bool,
    /// Sequences one replica runs at once; the engine's own default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Requests that may wait for a free sequence or a wake, beyond those
    /// running; four times the concurrency when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue: Option<u32>,
}

impl Scaling {
    /// How many requests the model takes at once, running and waiting,
    /// given the engine that serves it.
    pub fn admission(&self, engine: &EngineSpec) -> Admission {
        let concurrency = self.max_concurrency.unwrap_or_else(|| engine.default_concurrency()).max(1);
        let queue = self.max_queue.unwrap_or(concurrency.saturating_mul(QUEUE_PER_SEQUENCE));
        Admission { concurrency, queue, replicas: self.max_replicas.max(1) }
    }
}

/// Waiting requests allowed per running sequence when a spec sets no `max_queue`.
pub const QUEUE_PER_SEQUENCE: u32 = 4;

/// The bounds of a model's admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Sequences one replica runs at once.
    pub concurrency: u32,
    /// Requests that may wait beyond those running.
    pub queue: u32,
    pub replicas: u32,
}

impl Admission {
    /// Most requests in the model's hands at once: every replica full and the queue too.
    pub fn capacity(&self) -> u64 {
        u64::from(self.concurrency) * u64::from(self.replicas) + u64::from(self.queue)
    }

    /// Whether one more request may come in while `in_flight` are held.
    pub fn admits(&self, in_flight: u64) -> bool {
        in_flight < self.capacity()
    }
}

impl Default for Scaling {
    fn default() -> Self {
        Self {
            min_replicas: 0,
            max_replicas: 1,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            warm_tier: WarmTier::Ram,
            never_preempt: false,
            max_concurrency: None,
            max_queue: None,
        }
    }
}

/// Smallest context window a model may be configured with, in tokens: a chat
/// template alone takes a few dozen.
pub const MIN_CONTEXT_LENGTH: u32 = 64;

/// What to serve and how: one entry of the `models:` list. Its JSON form
/// is what a scheduler sends a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub name: ModelName,
    pub aliases: Vec<ModelAlias>,
    pub artifact: ArtifactUri,
    /// When set, the artifact is refused unless its SHA-256 matches.
    pub sha256: Option<Sha256Digest>,
    /// Context window to serve, in tokens; defaults to what the model was trained
    /// for, and may only shrink it (KV cache memory grows with it).
    pub context_length: Option<u32>,
    /// A Jinja chat template that replaces the one in the model file.
    pub chat_template: Option<String>,
    /// The project that owns the model; device shares are fair between projects.
    pub project: ProjectName,
    pub scaling: Scaling,
    /// The engine that serves it: the builtin one unless the spec says.
    #[serde(default, skip_serializing_if = "EngineSpec::is_builtin")]
    pub engine: EngineSpec,
    /// What the model does; `None`: whatever its artifact is. When set,
    /// the artifact must be of this kind, and requests to routes the kind
    /// does not serve are refused before the model is woken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ModelKind>,
}

impl ModelSpec {
    /// A spec with only the required fields set.
    pub fn new(name: ModelName, artifact: ArtifactUri) -> Self {
        Self {
            name,
            aliases: Vec::new(),
            artifact,
            sha256: None,
            context_length: None,
            chat_template: None,
            project: default_project(),
            scaling: Scaling::default(),
            engine: EngineSpec::Builtin,
            kind: None,
        }
    }
}

/// The project of models whose spec names none.
pub fn default_project() -> ProjectName {
    // A constant slug that ProjectName accepts; the test below keeps it so.
    ProjectName::parse(DEFAULT_PROJECT).unwrap_or_else(|_| unreachable!("the default project name is a valid slug"))
}

/// Why a set of model specs cannot be served together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelSpecError {
    #[error("model {first:?} and model {second:?} both answer to {id:?}")]
    DuplicateId { id: String, first: String, second: String },
    #[error("model {model:?}: context_length {value} is below the minimum of {min}")]
    ContextTooSmall { model: String, value: u32, min: u32 },
    #[error("model {model:?}: min_replicas must be 0 (may sleep) or 1 (always on), not {value}")]
    MinReplicas { model: String, value: u32 },
    #[error("model {model:?}: max_replicas must be at least 1 and at least min_replicas, not {value}")]
    MaxReplicas { model: String, value: u32 },
    #[error("model {model:?}: max_concurrency must be at least 1")]
    MaxConcurrency { model: String },
    #[error("model {model:?}: {}", .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Engine { model: String, errors: Vec<EngineError> },
}

/// Checks that names and aliases are unique across all specs (a `"model"` value
/// must resolve to one model) and that each spec is usable on its own.
///
/// # Errors
/// The first [`ModelSpecError`] found.
pub fn validate_model_set(specs: &[ModelSpec]) -> Result<(), ModelSpecError> {
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for spec in specs {
        if let Some(value) = spec.context_length.filter(|&v| v < MIN_CONTEXT_LENGTH) {
            return Err(ModelSpecError::ContextTooSmall {
                model: spec.name.to_string(),
                value,
                min: MIN_CONTEXT_LENGTH,
            });
        }
        if spec.scaling.min_replicas > 1 {
            return Err(ModelSpecError::MinReplicas { model: spec.name.to_string(), value: spec.scaling.min_replicas });
        }
        if spec.scaling.max_replicas == 0 || spec.scaling.max_replicas < spec.scaling.min_replicas {
            return Err(ModelSpecError::MaxReplicas { model: spec.name.to_string(), value: spec.scaling.max_replicas });
        }
        if spec.scaling.max_concurrency == Some(0) {
            return Err(ModelSpecError::MaxConcurrency { model: spec.name.to_string() });
        }
        spec.engine.validate().map_err(|errors| ModelSpecError::Engine { model: spec.name.to_string(), errors })?;
        let ids = std::iter::once(spec.name.as_str()).chain(spec.aliases.iter().map(ModelAlias::as_str));
        let mut own: Vec<&str> = Vec::new();
        for id in ids {
            if own.contains(&id) {
                continue;
            }
            own.push(id);
            if let Some(first) = owner.insert(id, spec.name.as_str()) {
                return Err(ModelSpecError::DuplicateId {
                    id: id.to_owned(),
                    first: first.to_owned(),
                    second: spec.name.to_string(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, aliases: &[&str]) -> ModelSpec {
        let mut s = ModelSpec::new(
            ModelName::parse(name).unwrap_or_else(|e| panic!("{e}")),
            ArtifactUri::File("/m.gguf".into()),
        );
        s.aliases = aliases.iter().map(|a| ModelAlias::parse(a).unwrap_or_else(|e| panic!("{e}"))).collect();
        s
    }

    #[test]
    fn an_alias_may_not_shadow_another_models_name() {
        let err = validate_model_set(&[spec("a", &[]), spec("b", &["a"])]);
        assert_eq!(err, Err(ModelSpecError::DuplicateId { id: "a".into(), first: "a".into(), second: "b".into() }));
    }

    #[test]
    fn a_model_may_repeat_its_own_name_as_alias() {
        assert_eq!(validate_model_set(&[spec("a", &["a", "A/x"]), spec("b", &["B/x"])]), Ok(()));
    }

    #[test]
    fn a_spec_survives_its_json_form() {
        let mut s = spec("a", &["Org/A"]);
        s.scaling.idle_timeout = Duration::from_secs(90);
        s.scaling.max_replicas = 3;
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""idle_timeout":"90s""#), "{json}");
        assert_eq!(serde_json::from_str::<ModelSpec>(&json).unwrap(), s);
        let relative = json.replace("/m.gguf", "m.gguf");
        assert!(serde_json::from_str::<ModelSpec>(&relative).is_err());
    }

    #[test]
    fn the_default_project_is_a_valid_name() {
        assert_eq!(default_project().as_str(), DEFAULT_PROJECT);
    }

    #[test]
    fn an_engine_travels_with_the_spec_and_is_checked_with_it() {
        let mut s = spec("a", &[]);
        assert!(!serde_json::to_string(&s).unwrap().contains("engine"), "builtin is not written out");
        s.engine = serde_json::from_value(serde_json::json!({"kind": "llama-server", "binary": "/bin/llama-server"}))
            .unwrap_or_else(|e| panic!("{e}"));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<ModelSpec>(&json).unwrap(), s);
        assert_eq!(validate_model_set(std::slice::from_ref(&s)), Ok(()));
        s.engine = serde_json::from_value(serde_json::json!({"kind": "command", "argv": ["srv", "{host}"]}))
            .unwrap_or_else(|e| panic!("{e}"));
        let Err(ModelSpecError::Engine { errors, .. }) = validate_model_set(&[s]) else { panic!("refused") };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["engine.argv[0]", "engine.argv"]);
    }

    #[test]
    fn admission_defaults_follow_the_engine_and_the_spec_overrides_them() {
        let mut s = spec("a", &[]);
        let builtin = s.scaling.admission(&s.engine);
        assert_eq!((builtin.concurrency, builtin.queue, builtin.capacity()), (16, 64, 80));
        s.scaling.max_concurrency = Some(2);
        s.scaling.max_queue = Some(0);
        s.scaling.max_replicas = 3;
        let set = s.scaling.admission(&s.engine);
        assert_eq!(set.capacity(), 6);
        assert!(set.admits(5) && !set.admits(6));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<ModelSpec>(&json).unwrap(), s);
        s.scaling.max_concurrency = Some(0);
        assert!(matches!(validate_model_set(&[s]), Err(ModelSpecError::MaxConcurrency { .. })));
    }

    #[test]
    fn tiny_context_windows_are_refused() {
        let mut s = spec("a", &[]);
        s.context_length = Some(8);
        assert!(matches!(validate_model_set(&[s]), Err(ModelSpecError::ContextTooSmall { .. })));
    }
}
