//! What a generation's output must match: a JSON Schema, any JSON object, a
//! regular expression, a Lark grammar, or a forced tool call, described as
//! a grammar in llguidance's dialect (Lark, with JSON Schemas embedded by
//! `%json`). The engine compiles it against its own vocabulary and masks
//! every token that would leave it (`node-runtime/src/constraint.rs`); this
//! module only writes the description, so it stays free of any tokenizer.
//! The Hermes tool-call format (its tags, and parsing calls back out of the
//! output) lives in [`tool_calls`].

mod python_call;
mod tool_calls;

use serde_json::{Value, json};

pub use tool_calls::{HermesToolCalls, ParsedToolCall, ToolCallFormat, ToolCallSplitter, ToolDef, ToolSplit};

/// Deepest nesting of the JSON document a schema may be (objects and arrays
/// inside each other): a schema nested 30 levels (each level an object and
/// its `properties`) fits; one of a thousand, written to cost the grammar
/// compiler time, does not.
pub const MAX_SCHEMA_DEPTH: usize = 64;
/// Most JSON values a schema may hold: about 2,000 properties or enum
/// values, far more than a schema written for a model has. Compiling grows
/// faster than the schema: measured on the 2-core test machine against the
/// demo model's 151k-token vocabulary, 1,000 properties take 0.2 s, 2,000
/// 0.8 s, 4,000 3 s.
pub const MAX_SCHEMA_VALUES: usize = 4_096;
/// Longest Lark grammar or regular expression a request may give, in
/// bytes: real ones are a few hundred; compiling grows with the text.
pub const MAX_GRAMMAR_BYTES: usize = 16 * 1024;

/// What a chat answer must be (`response_format`).
#[derive(Debug, Clone, PartialEq)]
pub enum OutputFormat {
    Text,
    JsonObject,
    JsonSchema(Value),
}

/// Whether the model may, must, or must with one tool, call a tool (`tool_choice`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolMode {
    Auto,
    /// At least one call; with `parallel`, one or more (`parallel_tool_calls`).
    Required {
        parallel: bool,
    },
    Named(String),
}

/// A schema or grammar that cannot be enforced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at {path})")]
pub struct SchemaError {
    /// JSON pointer into the schema, `#` for its root.
    pub path: String,
    pub message: String,
}

fn err(message: impl Into<String>) -> SchemaError {
    SchemaError { path: "#".into(), message: message.into() }
}

/// A grammar the whole output must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputGrammar {
    /// Lark in llguidance's dialect, with a `start` rule.
    Lark(String),
    /// A regular expression the whole output matches.
    Regex(String),
}

impl OutputGrammar {
    /// One JSON value matching `schema` (a JSON Schema).
    ///
    /// # Errors
    /// [`SchemaError`] when `schema` is not a schema, or nests too deep.
    pub fn json_schema(schema: &Value) -> Result<Self, SchemaError> {
        Ok(Self::Lark(format!("start: answer\n{}", json_rule("answer", schema)?)))
    }

    /// Any JSON object (`response_format: json_object`).
    pub fn json_object() -> Self {
        Self::Lark(format!("start: answer\n{}", json_object_rule("answer")))
    }

    /// The output of a chat answer: `format` and, unless `tools` is `None`
    /// (no tools, or `tool_choice: none`), a tool call as `mode` allows.
    /// `None` when the output is free text.
    ///
    /// # Errors
    /// [`SchemaError`] when a schema cannot be enforced.
    pub fn for_output(
        format: &OutputFormat,
        tools: Option<(&[ToolDef], &ToolMode)>,
    ) -> Result<Option<Self>, SchemaError> {
        let answer = match format {
            OutputFormat::Text => None,
            OutputFormat::JsonObject => Some(json_object_rule("answer")),
            OutputFormat::JsonSchema(schema) => Some(json_rule("answer", schema)?),
        };
        let lark = match (tools, answer) {
            (None | Some((_, ToolMode::Auto)), None) => return Ok(None),
            (None, Some(answer)) => format!("start: answer\n{answer}"),
            (Some((tools, ToolMode::Required { parallel: false })), _) => {
                format!("start: tool_call\n{}", HermesToolCalls::lark_rules(tools)?)
            }
            (Some((tools, ToolMode::Required { parallel: true })), _) => {
                format!("start: tool_call (\"\\n\" tool_call)*\n{}", HermesToolCalls::lark_rules(tools)?)
            }
            (Some((tools, ToolMode::Named(name))), _) => {
                let named: Vec<ToolDef> = tools.iter().filter(|t| &t.name == name).cloned().collect();
                format!("start: tool_call\n{}", HermesToolCalls::lark_rules(&named)?)
            }
            (Some((tools, ToolMode::Auto)), Some(answer)) => {
                format!("start: tool_call | answer\n{}{answer}", HermesToolCalls::lark_rules(tools)?)
            }
        };
        Ok(Some(Self::Lark(lark)))
    }

    /// A Lark grammar (llguidance's dialect) a request gives.
    ///
    /// # Errors
    /// [`SchemaError`] past [`MAX_GRAMMAR_BYTES`].
    pub fn lark(text: &str) -> Result<Self, SchemaError> {
        within_grammar_bytes(text)?;
        Ok(Self::Lark(text.to_owned()))
    }

    /// A regular expression a request gives.
    ///
    /// # Errors
    /// [`SchemaError`] past [`MAX_GRAMMAR_BYTES`].
    pub fn regex(text: &str) -> Result<Self, SchemaError> {
        within_grammar_bytes(text)?;
        Ok(Self::Regex(text.to_owned()))
    }

    /// One of `options`, exactly (vLLM's `guided_choice`).
    ///
    /// # Errors
    /// [`SchemaError`] for an empty list.
    pub fn choice(options: &[String]) -> Result<Self, SchemaError> {
        if options.is_empty() {
            return Err(err("a choice needs at least one option"));
        }
        let alternatives: Vec<String> = options.iter().map(|o| serde_json::to_string(o).unwrap_or_default()).collect();
        let lark = format!("start: {}\n", alternatives.join(" | "));
        within_grammar_bytes(&lark)?;
        Ok(Self::Lark(lark))
    }
}

fn within_grammar_bytes(text: &str) -> Result<(), SchemaError> {
    if text.len() > MAX_GRAMMAR_BYTES {
        return Err(err(format!("the grammar is longer than {MAX_GRAMMAR_BYTES} bytes")));
    }
    Ok(())
}

/// A Lark rule `name` holding one JSON value that matches `schema`.
fn json_rule(name: &str, schema: &Value) -> Result<String, SchemaError> {
    Ok(format!("{name}: %json {}\n", with_json_options(guided_schema(schema)?)))
}

/// `schema` as the grammar compiler takes it: checked to be a schema of a
/// bounded depth; the schema `true` written as `{}`.
///
/// # Errors
/// [`SchemaError`] for anything but an object or `true`, or too deep a nesting.
pub(crate) fn guided_schema(schema: &Value) -> Result<Value, SchemaError> {
    let (deepest, values) = measure(schema);
    if deepest > MAX_SCHEMA_DEPTH {
        return Err(err(format!("the schema nests more than {MAX_SCHEMA_DEPTH} levels deep")));
    }
    if values > MAX_SCHEMA_VALUES {
        return Err(err(format!("the schema is too large to enforce (over {MAX_SCHEMA_VALUES} JSON values)")));
    }
    match schema {
        Value::Bool(true) => Ok(json!({})),
        Value::Bool(false) => Err(err("the schema `false` matches nothing")),
        Value::Object(_) => {
            let mut schema = schema.clone();
            close_objects(&mut schema);
            Ok(schema)
        }
        _ => Err(err("a schema must be an object or a boolean")),
    }
}

/// Objects that declare their properties take no others unless the schema
/// says so (`additionalProperties`): what OpenAI's strict mode requires, and
/// what keeps a model from writing keys nobody asked for. Members of
/// `allOf` are left alone, since closing each would make them exclude each
/// other's properties.
fn close_objects(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    if map.contains_key("properties")
        && !map.contains_key("additionalProperties")
        && !map.contains_key("patternProperties")
    {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    for (key, value) in map.iter_mut() {
        match (key.as_str(), value) {
            ("allOf" | "const" | "enum" | "default" | "examples", _) => {}
            ("properties" | "$defs" | "definitions", Value::Object(members)) => {
                members.values_mut().for_each(close_objects)
            }
            ("anyOf" | "oneOf" | "prefixItems", Value::Array(options)) => options.iter_mut().for_each(close_objects),
            ("items" | "additionalProperties", v @ Value::Object(_)) => close_objects(v),
            _ => {}
        }
    }
}

/// How JSON is written under a schema: `{"a": 1, "b": [1, 2]}`, one space
/// after each separator and no other whitespace, so a model cannot spend its
/// tokens on blanks and answers read alike whatever the model.
pub(crate) fn with_json_options(mut schema: Value) -> Value {
    if let Value::Object(map) = &mut schema {
        map.insert(
            "x-guidance".into(),
            json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": ", "lenient": false}),
        );
    }
    schema
}

/// Between two tokens of JSON mode's output, at most one line break and 32
/// blanks around it.
pub const JSON_OBJECT_WHITESPACE: &str = r"[ \t]{1,32}|[ \t]{0,32}\r?\n[ \t]{0,32}";

/// `response_format: json_object` as a rule: any object, laid out as the
/// model likes to write JSON (on one line or indented over several). Unlike
/// a schema, nothing here asks for content, so a model whose next token
/// would be a line break must not be pushed into closing the object at once
/// (`{}`); the blanks are bounded per gap, so they cannot run on.
fn json_object_rule(name: &str) -> String {
    let options = json!({"whitespace_pattern": JSON_OBJECT_WHITESPACE, "item_separator": ",", "key_separator": ":", "lenient": false});
    format!("{name}: %json {}\n", json!({"type": "object", "x-guidance": options}))
}

/// How deeply arrays and objects nest in `value`, and how many values it
/// holds, without recursion.
fn measure(value: &Value) -> (usize, usize) {
    let (mut deepest, mut values) = (0, 0);
    let mut stack = vec![(value, 1usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        values += 1;
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, d + 1))),
            _ => {}
        }
    }
    (deepest, values)
}

#[cfg(test)]
mod tests;
