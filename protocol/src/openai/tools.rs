//! Tools and structured output on chat completions: `tools`, `tool_choice`
//! and `response_format` validated into the grammar the output must match,
//! and tool-call markup in the output turned into OpenAI tool calls.

use std::sync::Arc;

use greenthread_core::grammar::{OutputFormat, OutputGrammar, ParsedToolCall, SchemaError, ToolDef, ToolMode};
use serde_json::{Value, json};

use super::types::{FunctionDelta, FunctionOut, ResponseFormat, ToolCallDelta, ToolCallOut};
use crate::error::{ApiError, ApiResult};

/// OpenAI's limit on a function name.
const MAX_TOOL_NAME: usize = 64;
/// Tools one request may offer (OpenAI allows 128).
const MAX_TOOLS: usize = 128;

/// The engine's answer to whether it can enforce a grammar: the reason when
/// it cannot. Validation asks before a model is woken, so a grammar the
/// engine would refuse is a 400 naming the field that asked for it.
pub type Enforceable<'a> = &'a (dyn Fn(&OutputGrammar) -> Result<(), String> + Sync);

/// What a chat answer must look like and how to read it.
#[derive(Debug, Clone, Default)]
pub struct ValidOutput {
    /// The tools as the chat template sees them; `None` when none are offered
    /// (or `tool_choice` is `none`).
    pub tools: Option<Value>,
    /// The names of the tools the output may call; `None`: no calls are looked for.
    pub callable: Option<Vec<String>>,
    /// What the output must match, if anything.
    pub grammar: Option<Arc<OutputGrammar>>,
}

/// Validates the tool and format fields of a chat request.
///
/// # Errors
/// [`ApiError::InvalidParam`] naming the field: unknown types, bad names,
/// a `tool_choice` naming no offered tool, a schema that cannot be enforced.
pub fn output(
    tools: Option<Vec<Value>>,
    tool_choice: Option<&Value>,
    parallel_tool_calls: Option<bool>,
    format: Option<&ResponseFormat>,
    enforceable: Enforceable<'_>,
) -> ApiResult<ValidOutput> {
    let format = output_format(format)?;
    let tools = tools.unwrap_or_default();
    if tools.len() > MAX_TOOLS {
        return Err(ApiError::invalid("tools", format!("at most {MAX_TOOLS} tools may be offered")));
    }
    let defs = tools.iter().enumerate().map(|(i, t)| tool_def(i, t)).collect::<ApiResult<Vec<_>>>()?;
    if let Some((i, def)) = defs.iter().enumerate().find(|(i, d)| defs[..*i].iter().any(|e| e.name == d.name)) {
        return Err(ApiError::invalid(format!("tools[{i}].function.name"), format!("{:?} is offered twice", def.name)));
    }
    let mode = tool_mode(tool_choice, &defs, parallel_tool_calls.unwrap_or(true))?;
    let offered = mode.as_ref().map(|m| (defs.as_slice(), m));
    // Each part is checked alone first, so that a refusal names its field.
    if let OutputFormat::JsonSchema(schema) = &format {
        let alone = OutputGrammar::json_schema(schema).map_err(schema_error)?;
        checked(&alone, "response_format.json_schema.schema", enforceable)?;
    }
    let grammar = OutputGrammar::for_output(&format, offered).map_err(schema_error)?;
    if let (Some(grammar), Some((_, mode))) = (&grammar, offered)
        && (*mode != ToolMode::Auto || format != OutputFormat::Text)
    {
        checked(grammar, "tools", enforceable)?;
    }
    let grammar = grammar.map(Arc::new);
    let callable = offered.map(|_| defs.iter().map(|d| d.name.clone()).collect());
    Ok(ValidOutput { callable, tools: offered.map(|_| Value::Array(tools)), grammar })
}

fn output_format(format: Option<&ResponseFormat>) -> ApiResult<OutputFormat> {
    let Some(format) = format else { return Ok(OutputFormat::Text) };
    match format.kind.as_str() {
        "text" => Ok(OutputFormat::Text),
        "json_object" => Ok(OutputFormat::JsonObject),
        "json_schema" => {
            let schema =
                format.json_schema.as_ref().and_then(|s| s.schema.clone()).ok_or_else(|| {
                    ApiError::invalid("response_format.json_schema.schema", "json_schema needs a schema")
                })?;
            Ok(OutputFormat::JsonSchema(schema))
        }
        other => Err(ApiError::invalid(
            "response_format.type",
            format!("unknown response_format type {other:?}; expected text, json_object or json_schema"),
        )),
    }
}

fn tool_def(i: usize, tool: &Value) -> ApiResult<ToolDef> {
    let at = |field: &str| format!("tools[{i}].{field}");
    if tool["type"] != "function" {
        return Err(ApiError::invalid(at("type"), "only tools of type \"function\" are supported"));
    }
    let name = tool["function"]["name"].as_str().unwrap_or_default();
    let valid_name = !name.is_empty()
        && name.len() <= MAX_TOOL_NAME
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_name {
        return Err(ApiError::invalid(
            at("function.name"),
            format!("a function name is 1 to {MAX_TOOL_NAME} letters, digits, underscores or dashes"),
        ));
    }
    let parameters = match &tool["function"]["parameters"] {
        Value::Null => json!({"type": "object", "properties": {}}),
        p @ Value::Object(_) => p.clone(),
        _ => return Err(ApiError::invalid(at("function.parameters"), "parameters must be a JSON Schema object")),
    };
    Ok(ToolDef { name: name.to_owned(), parameters })
}

/// `None`: no tools on offer.
fn tool_mode(choice: Option<&Value>, defs: &[ToolDef], parallel: bool) -> ApiResult<Option<ToolMode>> {
    let mode = match choice {
        None => ToolMode::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "none" => return Ok(None),
            "auto" => ToolMode::Auto,
            "required" => ToolMode::Required { parallel },
            other => {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!("unknown tool_choice {other:?}; expected none, auto, required or a function"),
                ));
            }
        },
        Some(v) => {
            let name = v["function"]["name"].as_str().filter(|_| v["type"] == "function").ok_or_else(|| {
                ApiError::invalid("tool_choice", "expected {\"type\": \"function\", \"function\": {\"name\": …}}")
            })?;
            if !defs.iter().any(|d| d.name == name) {
                return Err(ApiError::invalid("tool_choice", format!("no tool named {name:?} is offered")));
            }
            ToolMode::Named(name.to_owned())
        }
    };
    if defs.is_empty() {
        return match mode {
            ToolMode::Auto if choice.is_none() => Ok(None),
            _ => Err(ApiError::invalid("tool_choice", "tool_choice needs tools")),
        };
    }
    Ok(Some(mode))
}

/// Refuses a grammar that cannot be enforced, naming `param`.
///
/// # Errors
/// [`ApiError::InvalidParam`] with the grammar compiler's reason.
pub fn checked(grammar: &OutputGrammar, param: &str, enforceable: Enforceable<'_>) -> ApiResult<()> {
    enforceable(grammar).map_err(|reason| ApiError::invalid(param, format!("cannot be enforced: {reason}")))
}

fn schema_error(e: SchemaError) -> ApiError {
    let param =
        if e.path.starts_with("tools") { "tools".to_owned() } else { "response_format.json_schema.schema".to_owned() };
    ApiError::invalid(param, e.to_string())
}

/// A tool call id: `call_` and 24 random alphanumerics.
pub fn call_id() -> String {
    format!("call_{}", crate::ids::random_suffix())
}

/// An OpenAI tool call for one found in the output.
pub fn call_out(call: ParsedToolCall) -> ToolCallOut {
    ToolCallOut {
        id: call_id(),
        kind: "function",
        function: FunctionOut { name: call.name, arguments: call.arguments.to_string() },
    }
}

/// The stream deltas of call number `index`: its id and name, then its arguments.
pub fn call_deltas(index: u32, call: ParsedToolCall) -> [ToolCallDelta; 2] {
    let out = call_out(call);
    [
        ToolCallDelta {
            index,
            id: Some(out.id),
            kind: Some("function"),
            function: FunctionDelta { name: Some(out.function.name), arguments: String::new() },
        },
        ToolCallDelta {
            index,
            id: None,
            kind: None,
            function: FunctionDelta { name: None, arguments: out.function.arguments },
        },
    ]
}

/// The message content beside tool calls: `None` when it is only whitespace.
pub fn content_beside_calls(text: String, calls: usize) -> Option<String> {
    if calls > 0 && text.trim().is_empty() { None } else { Some(text) }
}

#[cfg(test)]
mod tests {
    use greenthread_node_runtime::constraint;

    use super::*;

    fn output(
        tools: Option<Vec<Value>>,
        choice: Option<&Value>,
        format: Option<&ResponseFormat>,
    ) -> ApiResult<ValidOutput> {
        super::output(tools, choice, None, format, &constraint::check)
    }

    fn weather() -> Vec<Value> {
        vec![json!({"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})]
    }

    fn param(r: ApiResult<ValidOutput>) -> String {
        match r {
            Err(ApiError::InvalidParam { param, .. }) => param,
            other => panic!("expected a parameter error, got {other:?}"),
        }
    }

    fn format(body: Value) -> ResponseFormat {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn tools_on_auto_are_offered_and_parsed_without_a_grammar() {
        let v = output(Some(weather()), None, None).unwrap();
        assert!(v.callable.is_some() && v.tools.is_some() && v.grammar.is_none());
    }

    #[test]
    fn tool_choice_none_hides_the_tools() {
        let v = output(Some(weather()), Some(&json!("none")), None).unwrap();
        assert!(v.callable.is_none() && v.tools.is_none());
    }

    #[test]
    fn required_and_named_choices_force_a_call() {
        let v = output(Some(weather()), Some(&json!("required")), None).unwrap();
        assert!(matches!(v.grammar.as_deref(), Some(OutputGrammar::Lark(l)) if l.starts_with("start: tool_call")));
        let named = json!({"type": "function", "function": {"name": "get_weather"}});
        assert!(output(Some(weather()), Some(&named), None).unwrap().grammar.is_some());
    }

    #[test]
    fn json_formats_compile_to_grammars() {
        let v = output(None, None, Some(&format(json!({"type": "json_object"})))).unwrap();
        assert_eq!(v.grammar.as_deref(), Some(&OutputGrammar::json_object()));
        let schema = json!({"type": "json_schema", "json_schema": {"name": "p", "schema": {
            "type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}}}});
        let v = output(None, None, Some(&format(schema))).unwrap();
        assert!(v.grammar.is_some(), "numeric bounds are enforced now");
        let impossible = json!({"type": "json_schema", "json_schema": {"name": "p", "schema": {
            "type": "array", "minItems": 3, "maxItems": 1}}});
        assert_eq!(param(output(None, None, Some(&format(impossible)))), "response_format.json_schema.schema");
    }

    #[test]
    fn bad_tool_fields_are_named() {
        let unknown = json!({"type": "function", "function": {"name": "nope"}});
        assert_eq!(param(output(Some(weather()), Some(&unknown), None)), "tool_choice");
        assert_eq!(param(output(None, Some(&json!("required")), None)), "tool_choice");
        assert_eq!(param(output(Some(weather()), Some(&json!("sometimes")), None)), "tool_choice");
        let bad_name = vec![json!({"type": "function", "function": {"name": "get weather"}})];
        assert_eq!(param(output(Some(bad_name), None, None)), "tools[0].function.name");
        let twice = [weather(), weather()].concat();
        assert_eq!(param(output(Some(twice), None, None)), "tools[1].function.name");
        let retrieval = vec![json!({"type": "retrieval"})];
        assert_eq!(param(output(Some(retrieval), None, None)), "tools[0].type");
        let impossible = vec![json!({"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"n": {"type": "integer", "minimum": 5, "maximum": 1}}, "required": ["n"]}}})];
        assert_eq!(param(output(Some(impossible), Some(&json!("required")), None)), "tools");
        assert_eq!(param(output(None, None, Some(&format(json!({"type": "yaml"}))))), "response_format.type");
        assert_eq!(
            param(output(None, None, Some(&format(json!({"type": "json_schema", "json_schema": {"name": "x"}}))))),
            "response_format.json_schema.schema"
        );
    }
}
