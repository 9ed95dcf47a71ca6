//! JSON Schema to grammar. What a grammar can enforce is compiled; what it
//! cannot (numeric bounds, patterns) is refused by name rather than ignored,
//! so a caller never gets output that silently breaks its schema.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{Builder, MAX_NODES, MAX_SCHEMA_DEPTH, Node, NodeId};

/// A schema the grammar cannot enforce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at {path})")]
pub struct SchemaError {
    /// JSON pointer into the schema, `#` for its root.
    pub path: String,
    pub message: String,
}

/// Keywords that only describe: they change nothing a value must be.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "format",
    "readOnly",
    "writeOnly",
    "deprecated",
    "$defs",
    "definitions",
    "strict",
];

/// Keywords compiled into the grammar.
const ENFORCED: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
];

struct Compiler<'s> {
    root: &'s Value,
    refs: HashMap<String, NodeId>,
    /// Schemas entered and not yet left.
    depth: usize,
}

pub(super) fn compile(b: &mut Builder, schema: &Value) -> Result<NodeId, SchemaError> {
    let mut c = Compiler { root: schema, refs: HashMap::new(), depth: 0 };
    c.node(b, schema, "#")
}

fn err(path: &str, message: impl Into<String>) -> SchemaError {
    SchemaError { path: path.to_owned(), message: message.into() }
}

impl Compiler<'_> {
    /// Compiles one schema, within the bounds on depth and size.
    fn node(&mut self, b: &mut Builder, schema: &Value, path: &str) -> Result<NodeId, SchemaError> {
        if self.depth >= MAX_SCHEMA_DEPTH {
            return Err(err(path, format!("schemas nest more than {MAX_SCHEMA_DEPTH} levels deep")));
        }
        if b.len() > MAX_NODES {
            return Err(err(path, format!("the schema is too large to enforce (over {MAX_NODES} grammar rules)")));
        }
        self.depth += 1;
        let compiled = self.unbounded_node(b, schema, path);
        self.depth -= 1;
        compiled
    }

    fn unbounded_node(&mut self, b: &mut Builder, schema: &Value, path: &str) -> Result<NodeId, SchemaError> {
        let obj = match schema {
            Value::Bool(true) => return Ok(b.any_value()),
            Value::Bool(false) => return Err(err(path, "the schema `false` matches nothing")),
            Value::Object(obj) => obj,
            _ => return Err(err(path, "a schema must be an object or a boolean")),
        };
        if let Some(key) = obj.keys().find(|k| !ANNOTATIONS.contains(&k.as_str()) && !ENFORCED.contains(&k.as_str())) {
            return Err(err(path, format!("keyword {key:?} cannot be enforced")));
        }
        if let Some(reference) = obj.get("$ref") {
            if obj.keys().any(|k| ENFORCED.contains(&k.as_str()) && k != "$ref") {
                return Err(err(path, "$ref beside other constraints cannot be enforced"));
            }
            return self.reference(b, reference, path);
        }
        if let Some(value) = obj.get("const") {
            return Ok(literal_of(b, value));
        }
        if let Some(values) = obj.get("enum") {
            let values = values
                .as_array()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| err(path, "enum must be a non-empty array"))?;
            if b.len() + values.len() > MAX_NODES {
                return Err(err(path, format!("enum has too many values to enforce (over {MAX_NODES} grammar rules)")));
            }
            let options = values.iter().map(|v| literal_of(b, v)).collect();
            return Ok(b.add(Node::Alt(options)));
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(options) = obj.get(key) {
                let options = options
                    .as_array()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| err(path, format!("{key} must be a non-empty array")))?;
                let ids = options
                    .iter()
                    .enumerate()
                    .map(|(i, o)| self.node(b, o, &format!("{path}/{key}/{i}")))
                    .collect::<Result<_, _>>()?;
                return Ok(b.add(Node::Alt(ids)));
            }
        }
        if let Some(all) = obj.get("allOf") {
            return match all.as_array().map(Vec::as_slice) {
                Some([only]) => self.node(b, only, &format!("{path}/allOf/0")),
                _ => Err(err(path, "allOf with more than one schema cannot be enforced")),
            };
        }
        match obj.get("type") {
            Some(Value::String(ty)) => self.typed(b, obj, ty, path),
            Some(Value::Array(types)) => {
                let ids = types
                    .iter()
                    .map(|t| match t {
                        Value::String(ty) => self.typed(b, obj, ty, path),
                        _ => Err(err(path, "type must name JSON types")),
                    })
                    .collect::<Result<_, _>>()?;
                Ok(b.add(Node::Alt(ids)))
            }
            Some(_) => Err(err(path, "type must be a string or an array of strings")),
            None if obj.contains_key("properties") || obj.contains_key("additionalProperties") => {
                self.typed(b, obj, "object", path)
            }
            None if obj.contains_key("items") => self.typed(b, obj, "array", path),
            None => Ok(b.any_value()),
        }
    }

    fn typed(
        &mut self,
        b: &mut Builder,
        obj: &Map<String, Value>,
        ty: &str,
        path: &str,
    ) -> Result<NodeId, SchemaError> {
        let count = |key: &str| -> Result<Option<u32>, SchemaError> {
            obj.get(key)
                .map(|v| {
                    v.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| err(path, format!("{key} must be a non-negative integer")))
                })
                .transpose()
        };
        let bounds = |min_key: &str, max_key: &str| -> Result<(u32, Option<u32>), SchemaError> {
            let (min, max) = (count(min_key)?.unwrap_or(0), count(max_key)?);
            match max {
                Some(max) if min > max => {
                    Err(err(path, format!("{min_key} {min} is greater than {max_key} {max}: no value fits")))
                }
                _ => Ok((min, max)),
            }
        };
        Ok(match ty {
            "string" => {
                let (min, max) = bounds("minLength", "maxLength")?;
                b.add(Node::String { min, max })
            }
            "integer" => b.add(Node::Number { integer: true }),
            "number" => b.add(Node::Number { integer: false }),
            "boolean" => {
                let options = vec![b.literal("true"), b.literal("false")];
                b.add(Node::Alt(options))
            }
            "null" => b.literal("null"),
            "array" => {
                let item = match obj.get("items") {
                    Some(items) => self.node(b, items, &format!("{path}/items"))?,
                    None => b.any_value(),
                };
                let (min, max) = bounds("minItems", "maxItems")?;
                b.add(Node::List { open: b'[', close: b']', item, min, max })
            }
            "object" => self.object(b, obj, path)?,
            other => return Err(err(path, format!("unknown type {other:?}"))),
        })
    }

    /// Declared properties are written, all of them, in declaration order;
    /// an object without declared properties takes any members its
    /// `additionalProperties` allows.
    fn object(&mut self, b: &mut Builder, obj: &Map<String, Value>, path: &str) -> Result<NodeId, SchemaError> {
        let properties = match obj.get("properties") {
            Some(Value::Object(p)) => p,
            Some(_) => return Err(err(path, "properties must be an object")),
            None => &Map::new(),
        };
        if let Some(required) = obj.get("required").and_then(Value::as_array)
            && let Some(missing) = required.iter().filter_map(Value::as_str).find(|r| !properties.contains_key(*r))
        {
            return Err(err(path, format!("required property {missing:?} is not declared in properties")));
        }
        if properties.is_empty() {
            return match obj.get("additionalProperties") {
                Some(Value::Bool(false)) => {
                    let parts = vec![b.literal("{"), b.ws(), b.literal("}")];
                    Ok(b.add(Node::Seq(parts)))
                }
                Some(schema @ Value::Object(_)) => {
                    let value = self.node(b, schema, &format!("{path}/additionalProperties"))?;
                    Ok(b.free_object(value))
                }
                _ => Ok(b.any_object()),
            };
        }
        // Each member adds its key, separators and whitespace: about seven rules.
        if b.len() + properties.len() * 7 > MAX_NODES {
            return Err(err(path, format!("the schema is too large to enforce (over {MAX_NODES} grammar rules)")));
        }
        let members = properties
            .iter()
            .map(|(name, schema)| Ok((name.clone(), self.node(b, schema, &format!("{path}/properties/{name}"))?)))
            .collect::<Result<Vec<_>, SchemaError>>()?;
        Ok(b.object(&members))
    }

    /// `#/$defs/Name` and `#/definitions/Name`, and `#` itself; compiled once
    /// each, so recursive schemas become cycles in the grammar.
    fn reference(&mut self, b: &mut Builder, reference: &Value, path: &str) -> Result<NodeId, SchemaError> {
        let target = reference.as_str().ok_or_else(|| err(path, "$ref must be a string"))?;
        if let Some(&id) = self.refs.get(target) {
            return Ok(id);
        }
        let schema = resolve(self.root, target)
            .ok_or_else(|| err(path, format!("$ref {target:?} does not resolve inside this schema")))?;
        let slot = b.reserve();
        self.refs.insert(target.to_owned(), slot);
        let compiled = self.node(b, schema, target)?;
        b.set(slot, Node::Seq(vec![compiled]));
        Ok(slot)
    }
}

/// A local JSON pointer reference; remote references are never fetched.
fn resolve<'v>(root: &'v Value, reference: &str) -> Option<&'v Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() {
        return Some(root);
    }
    root.pointer(pointer)
}

/// The exact JSON text of `value`.
fn literal_of(b: &mut Builder, value: &Value) -> NodeId {
    let text = serde_json::to_string(value).unwrap_or_default();
    b.literal(&text)
}
