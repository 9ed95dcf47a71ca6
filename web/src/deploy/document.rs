//! The deploy form as a change to a project's document: a model's entry
//! written from the form's fields, put into or taken out of the document
//! that `plan` and `apply` take, and the server's refusals placed beside
//! the fields they concern. Pure, so the component only wires it up.

use serde_json::{Map, Value, json};

use crate::api::UserError;

/// The form's fields, each named as the document names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Name,
    Artifact,
    Kind,
    Engine,
    Aliases,
    WarmTier,
    IdleTimeout,
    MinReplicas,
    MaxReplicas,
    NeverPreempt,
    Service,
    /// Not one field's: shown above the buttons.
    Form,
}

impl Field {
    pub const ALL: [Field; 12] = [
        Field::Name,
        Field::Artifact,
        Field::Kind,
        Field::Engine,
        Field::Aliases,
        Field::WarmTier,
        Field::IdleTimeout,
        Field::MinReplicas,
        Field::MaxReplicas,
        Field::NeverPreempt,
        Field::Service,
        Field::Form,
    ];

    /// The key of a model's entry in the document.
    pub fn key(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::Artifact => "artifact",
            Field::Kind => "kind",
            Field::Engine => "engine",
            Field::Aliases => "aliases",
            Field::WarmTier => "warm_tier",
            Field::IdleTimeout => "idle_timeout",
            Field::MinReplicas => "min_replicas",
            Field::MaxReplicas => "max_replicas",
            Field::NeverPreempt => "never_preempt",
            Field::Service => "service",
            Field::Form => "form",
        }
    }

    fn from_key(key: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.key() == key && *f != Field::Form)
    }
}

/// The engines the form offers; a `command` engine is shown but edited only in a document.
pub const ENGINES: [&str; 4] = ["builtin", "llama-server", "vllm", "sglang"];
/// What a model does; empty: its artifact decides.
pub const KINDS: [&str; 6] = ["", "chat", "embedding", "asr", "tts", "reranker"];

/// The deploy form's values, as typed.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelForm {
    pub project: String,
    pub service: String,
    pub name: String,
    pub artifact: String,
    /// Empty: the artifact decides.
    pub kind: String,
    pub engine: String,
    /// The external engine's program on the node.
    pub engine_binary: String,
    /// Comma-separated.
    pub aliases: String,
    pub warm_tier: String,
    pub idle_timeout: String,
    pub min_replicas: String,
    pub max_replicas: String,
    pub never_preempt: bool,
}

impl ModelForm {
    /// A new model of `project`, with the defaults a document has.
    pub fn new_in(project: &str) -> Self {
        Self {
            project: project.to_owned(),
            service: "default".into(),
            name: String::new(),
            artifact: String::new(),
            kind: String::new(),
            engine: "builtin".into(),
            engine_binary: String::new(),
            aliases: String::new(),
            warm_tier: "ram".into(),
            idle_timeout: "5m".into(),
            min_replicas: "0".into(),
            max_replicas: "1".into(),
            never_preempt: false,
        }
    }

    /// The form for a model's entry in a document.
    pub fn from_entry(entry: &Value) -> Self {
        let text = |k: &str| entry.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let number = |k: &str, default: u64| entry.get(k).and_then(Value::as_u64).unwrap_or(default).to_string();
        let engine = entry.get("engine");
        Self {
            project: text("project"),
            service: Some(text("service")).filter(|s| !s.is_empty()).unwrap_or_else(|| "default".into()),
            name: text("name"),
            artifact: text("artifact"),
            kind: text("kind"),
            engine: engine.and_then(|e| e.get("kind")).and_then(Value::as_str).unwrap_or("builtin").to_owned(),
            engine_binary: engine.and_then(|e| e.get("binary")).and_then(Value::as_str).unwrap_or_default().to_owned(),
            aliases: entry
                .get("aliases")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
            warm_tier: Some(text("warm_tier")).filter(|s| !s.is_empty()).unwrap_or_else(|| "ram".into()),
            idle_timeout: Some(text("idle_timeout")).filter(|s| !s.is_empty()).unwrap_or_else(|| "5m".into()),
            min_replicas: number("min_replicas", 0),
            max_replicas: number("max_replicas", 1),
            never_preempt: entry.get("never_preempt").and_then(Value::as_bool).unwrap_or(false),
        }
    }

    /// The model's entry: `existing` (when editing) with the form's fields
    /// written over it, so fields the form does not show are kept.
    ///
    /// # Errors
    /// The first field that cannot be written, and why.
    pub fn to_entry(&self, existing: Option<&Value>) -> Result<Value, (Field, String)> {
        let mut entry: Map<String, Value> = existing.and_then(Value::as_object).cloned().unwrap_or_default();
        let name = self.name.trim();
        if name.is_empty() {
            return Err((Field::Name, "a model needs a name".into()));
        }
        let artifact = self.artifact.trim();
        if artifact.is_empty() {
            return Err((Field::Artifact, "choose a file the server offers, or type an object-store URI".into()));
        }
        let replicas = |field: Field, raw: &str| {
            raw.trim().parse::<u32>().map_err(|_| (field, format!("{raw:?} is not a whole number from 0")))
        };
        let (min, max) =
            (replicas(Field::MinReplicas, &self.min_replicas)?, replicas(Field::MaxReplicas, &self.max_replicas)?);
        let aliases: Vec<&str> = self.aliases.split(',').map(str::trim).filter(|a| !a.is_empty()).collect();
        let mut set = |k: &str, v: Value| {
            entry.insert(k.to_owned(), v);
        };
        set("name", json!(name));
        set("project", json!(self.project));
        set("service", json!(self.service.trim()));
        set("artifact", json!(artifact));
        set("aliases", json!(aliases));
        set("warm_tier", json!(self.warm_tier));
        set("idle_timeout", json!(self.idle_timeout.trim()));
        set("min_replicas", json!(min));
        set("max_replicas", json!(max));
        set("never_preempt", json!(self.never_preempt));
        if self.kind.is_empty() {
            entry.remove("kind");
        } else {
            entry.insert("kind".into(), json!(self.kind));
        }
        match self.engine.as_str() {
            "builtin" => {
                entry.remove("engine");
            }
            kind => {
                let binary = self.engine_binary.trim();
                let mut engine = entry.get("engine").filter(|e| e.get("kind") == Some(&json!(kind))).cloned();
                if kind != "command" {
                    if !binary.starts_with('/') {
                        return Err((Field::Engine, "the engine's binary is an absolute path on the node".into()));
                    }
                    let spec = engine.get_or_insert_with(|| json!({"kind": kind}));
                    spec["binary"] = json!(binary);
                }
                match engine {
                    Some(e) => entry.insert("engine".into(), e),
                    None => return Err((Field::Engine, "a command engine is written in a document".into())),
                };
            }
        }
        Ok(Value::Object(entry))
    }
}

fn models_mut(doc: &mut Value) -> &mut Vec<Value> {
    if !doc.get("models").is_some_and(Value::is_array) {
        doc["models"] = json!([]);
    }
    match doc.get_mut("models") {
        Some(Value::Array(models)) => models,
        _ => unreachable!("models was just made an array"),
    }
}

fn named<'a>(name: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |m: &Value| m.get("name").and_then(Value::as_str) == Some(name)
}

/// What the deploy panel does to a project's document.
#[derive(Debug, Clone, PartialEq)]
pub enum DocChange {
    /// Puts `entry` in place of the model `replacing`, or adds it.
    Put { replacing: Option<String>, entry: Value },
    /// Takes the model out.
    Take(String),
}

impl DocChange {
    pub fn applied_to(self, doc: Value) -> Value {
        match self {
            DocChange::Put { replacing, entry } => with_model(doc, replacing.as_deref(), entry),
            DocChange::Take(name) => without_model(doc, &name),
        }
    }
}

/// The entry of `name` in the document.
pub fn entry<'a>(doc: &'a Value, name: &str) -> Option<&'a Value> {
    doc.get("models")?.as_array()?.iter().find(|m| named(name)(m))
}

/// The document with `entry` in place of the model `replacing` (or added when
/// there is none, or when `replacing` is `None`).
pub fn with_model(mut doc: Value, replacing: Option<&str>, entry: Value) -> Value {
    let models = models_mut(&mut doc);
    match replacing.and_then(|name| models.iter().position(named(name))) {
        Some(i) => models[i] = entry,
        None => models.push(entry),
    }
    doc
}

/// The document without the model `name`.
pub fn without_model(mut doc: Value, name: &str) -> Value {
    models_mut(&mut doc).retain(|m| !named(name)(m));
    doc
}

/// The form field a refusal concerns. The server names fields as
/// `desired.models.<model>.<field>`, or names the document entry in its
/// message (`models[3].idle_timeout: …`) when the entry does not parse.
pub fn field_of(error: &UserError, model: &str) -> Field {
    let field = error.field.as_deref().unwrap_or_default();
    if let Some(rest) = field.strip_prefix(&format!("desired.models.{model}.")) {
        let key = rest.split('.').next().unwrap_or_default();
        return Field::from_key(key).unwrap_or(Field::Form);
    }
    if let Some(at) = error.message.find("models[") {
        let after = &error.message[at..];
        if let Some(dot) = after.find("].") {
            let key: String = after[dot + 2..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if let Some(f) = Field::from_key(&key) {
                return f;
            }
        }
    }
    // The message without the model's own name, which may hold a field's name (`kind-bert`).
    let message =
        [format!("{model:?}"), model.to_owned()].iter().fold(error.message.clone(), |m, n| m.replace(n, "«»"));
    let names_the_model = message.contains("model «»") || message.contains("name «»");
    // The field the message names first: `max_replicas must be at least min_replicas` is about max.
    let named_first = Field::ALL
        .into_iter()
        .filter(|f| !matches!(f, Field::Name | Field::Form))
        .filter_map(|f| message.find(f.key()).map(|at| (at, f)))
        .min_by_key(|(at, _)| *at)
        .map(|(_, f)| f);
    match field {
        // A whole-model refusal: the field its message names, else the name (taken, declared twice).
        "desired.models" | "desired" if field == "desired.models" || names_the_model => {
            named_first.or_else(|| message.contains("alias").then_some(Field::Aliases)).unwrap_or(Field::Name)
        }
        "desired.services" => Field::Service,
        _ => Field::Form,
    }
}

/// A value of a plan's diff as a document writes it: strings bare, the rest as JSON.
pub fn show_value(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "—".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A fresh idempotency key for one apply, so that a repeated click applies once.
pub fn idempotency_key(etag: &str) -> String {
    let nonce = (js_sys::Math::random() * 1e15) as u64;
    format!("console-{etag}-{nonce:x}")
}
