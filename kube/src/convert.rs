//! Between a `Model` resource and the model declaration the database holds:
//! the same fields, checked the way a GitOps document is checked.

use greenthread_core::desired::{DEFAULT_SERVICE, ModelDecl};
use greenthread_core::engine::EngineSpec;
use greenthread_core::{
    ArtifactUri, ModelAlias, ModelName, ModelSpec, ModelSpecError, ProjectName, ServiceName, Sha256Digest, WarmTier,
    format_duration, parse_duration, validate_model_set,
};

use super::crd::{EngineResource, ModelResourceSpec, WarmTierName};

/// A field of a resource that cannot be taken as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// `metadata.name`, `spec.artifact`, …
    pub field: String,
    pub message: String,
}

/// `r`'s value, or `None` with its error kept.
fn take<T>(errors: &mut Vec<FieldError>, r: Result<T, FieldError>) -> Option<T> {
    r.map_err(|e| errors.push(e)).ok()
}

fn field(field: &str, message: impl ToString) -> FieldError {
    FieldError { field: field.to_owned(), message: message.to_string() }
}

/// The declaration a resource named `name` in `namespace` stands for.
///
/// # Errors
/// Every field that is not valid, each naming its path in the resource.
pub fn to_decl(name: &str, namespace: &str, spec: &ModelResourceSpec) -> Result<ModelDecl, Vec<FieldError>> {
    let mut errors = Vec::new();
    let model = take(&mut errors, ModelName::parse(name).map_err(|e| field("metadata.name", e)));
    let project = take(
        &mut errors,
        ProjectName::parse(spec.project.as_deref().unwrap_or(namespace))
            .map_err(|e| field(if spec.project.is_some() { "spec.project" } else { "metadata.namespace" }, e)),
    );
    let service = take(
        &mut errors,
        ServiceName::parse(spec.service.as_deref().unwrap_or(DEFAULT_SERVICE)).map_err(|e| field("spec.service", e)),
    );
    // Paths are taken as written: the nodes resolve them, never relative to the operator.
    let artifact = take(&mut errors, ArtifactUri::parse(&spec.artifact, None).map_err(|e| field("spec.artifact", e)));
    let sha256 = match &spec.sha256 {
        Some(s) => take(&mut errors, Sha256Digest::parse(s).map_err(|e| field("spec.sha256", e))).map(Some),
        None => Some(None),
    };
    let mut aliases: Vec<ModelAlias> = Vec::new();
    for (i, a) in spec.aliases.iter().enumerate() {
        aliases.extend(take(&mut errors, ModelAlias::parse(a).map_err(|e| field(&format!("spec.aliases[{i}]"), e))));
    }
    let idle = match &spec.idle_timeout {
        Some(t) => take(&mut errors, parse_duration(t).map_err(|e| field("spec.idleTimeout", e))).map(Some),
        None => Some(None),
    };
    let engine = match &spec.engine {
        Some(e) => take(&mut errors, engine_spec(e)),
        None => Some(EngineSpec::Builtin),
    };
    let (Some(model), Some(project), Some(service), Some(artifact), Some(sha256), Some(idle), Some(engine)) =
        (model, project, service, artifact, sha256, idle, engine)
    else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut s = ModelSpec::new(model, artifact);
    s.project = project;
    s.aliases = aliases;
    s.sha256 = sha256;
    s.context_length = spec.context_length;
    s.chat_template = spec.chat_template.clone();
    s.kind = spec.kind.map(Into::into);
    if let Some(v) = spec.min_replicas {
        s.scaling.min_replicas = v;
    }
    s.scaling.max_replicas = spec.max_replicas.unwrap_or(s.scaling.max_replicas.max(s.scaling.min_replicas));
    if let Some(d) = idle {
        s.scaling.idle_timeout = d;
    }
    if let Some(w) = spec.warm_tier {
        s.scaling.warm_tier = match w {
            WarmTierName::Ram => WarmTier::Ram,
            WarmTierName::Disk => WarmTier::Disk,
            WarmTierName::Object => WarmTier::Object,
        };
    }
    s.scaling.never_preempt = spec.never_preempt;
    s.scaling.max_concurrency = spec.max_concurrency;
    s.scaling.max_queue = spec.max_queue;
    s.engine = engine;
    validate_model_set(std::slice::from_ref(&s)).map_err(|e| match e {
        ModelSpecError::Engine { errors, .. } => {
            errors.into_iter().map(|e| field(&format!("spec.{}", camel(&e.field)), e.message)).collect()
        }
        e => vec![field("spec", e)],
    })?;
    Ok(ModelDecl { service, spec: s })
}

/// The resource spec that declares `decl`: every field written out, so the
/// resource reads the same whatever the defaults become.
pub fn from_decl(decl: &ModelDecl) -> ModelResourceSpec {
    let s = &decl.spec;
    ModelResourceSpec {
        project: Some(s.project.to_string()),
        service: Some(decl.service.to_string()),
        artifact: s.artifact.to_string(),
        sha256: s.sha256.as_ref().map(ToString::to_string),
        aliases: s.aliases.iter().map(ToString::to_string).collect(),
        context_length: s.context_length,
        chat_template: s.chat_template.clone(),
        kind: s.kind.map(Into::into),
        min_replicas: Some(s.scaling.min_replicas),
        max_replicas: Some(s.scaling.max_replicas),
        idle_timeout: Some(format_duration(s.scaling.idle_timeout)),
        warm_tier: Some(match s.scaling.warm_tier {
            WarmTier::Ram => WarmTierName::Ram,
            WarmTier::Disk => WarmTierName::Disk,
            WarmTier::Object => WarmTierName::Object,
        }),
        never_preempt: s.scaling.never_preempt,
        max_concurrency: s.scaling.max_concurrency,
        max_queue: s.scaling.max_queue,
        engine: s.engine.is_external().then(|| engine_resource(&s.engine)),
    }
}

/// The document form of a resource's engine, read the way a document's is,
/// so a field it cannot take is named the same way.
fn engine_spec(e: &EngineResource) -> Result<EngineSpec, FieldError> {
    let value = serde_json::to_value(e).map_err(|err| field("spec.engine", err))?;
    let snake: serde_json::Map<String, serde_json::Value> = value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.replace("readyTimeout", "ready_timeout").replace("deviceMemory", "device_memory"), v.clone()))
        .collect();
    serde_path_to_error::deserialize::<_, EngineSpec>(serde_json::Value::Object(snake)).map_err(|err| {
        let at = err.path().to_string();
        let name = if at == "." { "spec.engine".to_owned() } else { format!("spec.engine.{}", camel(&at)) };
        field(&name, err.into_inner())
    })
}

fn engine_resource(engine: &EngineSpec) -> EngineResource {
    let value = serde_json::to_value(engine).unwrap_or_default();
    let camel_value: serde_json::Map<String, serde_json::Value> = value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| match v.as_u64() {
            // Sizes travel as byte counts; a resource writes them as people do.
            Some(bytes) if k == "device_memory" => (camel(k), serde_json::Value::String(size_text(bytes))),
            _ => (camel(k), v.clone()),
        })
        .collect();
    serde_json::from_value(serde_json::Value::Object(camel_value)).unwrap_or_default()
}

/// `8GiB`, `512MiB`, or plain bytes.
fn size_text(bytes: u64) -> String {
    for (unit, size) in [("TiB", 1u64 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// `engine.ready_timeout` as Kubernetes writes it: `engine.readyTimeout`.
fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}
