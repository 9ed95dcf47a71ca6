//! Anthropic content blocks and tools in OpenAI chat terms: `text` blocks
//! become content, `tool_use` blocks assistant tool calls, `tool_result`
//! blocks `tool` messages; `tools` and `tool_choice` map one to one.

use serde_json::{Value, json};

use super::types::{ContentBlockIn, ContentField, InputMessage, TextBlockIn};
use crate::error::ApiError;

fn unsupported(message: String) -> ApiError {
    ApiError::Unsupported { param: "messages", message }
}

/// The text of `system` blocks.
pub fn system_text(blocks: &[TextBlockIn]) -> Result<String, ApiError> {
    let mut text = String::new();
    for (i, block) in blocks.iter().enumerate() {
        match (block.kind.as_str(), &block.text) {
            ("text", Some(t)) => text.push_str(t),
            ("text", None) => return Err(ApiError::invalid(format!("system.{i}.text"), "Field required")),
            (other, _) => return Err(unsupported(format!("system.{i}: blocks of type {other:?} are not supported"))),
        }
    }
    Ok(text)
}

/// The OpenAI messages for Anthropic message `i`: tool results first (as
/// `tool` messages), then the message itself.
pub fn openai_messages(i: usize, m: &InputMessage) -> Result<Vec<Value>, ApiError> {
    let blocks = match &m.content {
        ContentField::Text(t) => return Ok(vec![json!({"role": m.role, "content": t})]),
        ContentField::Blocks(blocks) => blocks,
    };
    let at = |j: usize, field: &str| format!("messages.{i}.content.{j}.{field}");
    let mut text = String::new();
    let mut calls = Vec::new();
    let mut results = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        match block.kind.as_str() {
            "text" => {
                text.push_str(block.text.as_deref().ok_or_else(|| ApiError::invalid(at(j, "text"), "Field required"))?)
            }
            "tool_use" if m.role == "assistant" => calls.push(tool_call(block, |f| at(j, f))?),
            "tool_result" if m.role == "user" => results.push(tool_result(block, |f| at(j, f))?),
            kind @ ("tool_use" | "tool_result") => {
                let belongs = if kind == "tool_use" { "assistant" } else { "user" };
                let field = at(j, "type");
                return Err(ApiError::invalid(&field, format!("{field}: {kind} blocks belong in {belongs} messages")));
            }
            other => {
                return Err(unsupported(format!(
                    "messages.{i}.content.{j}: blocks of type {other:?} are not supported"
                )));
            }
        }
    }
    let mut out = results;
    if m.role == "assistant" {
        let content = if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) };
        let mut message = json!({"role": "assistant", "content": content});
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(calls);
        }
        out.push(message);
    } else if !text.is_empty() || out.is_empty() {
        out.push(json!({"role": m.role, "content": text}));
    }
    Ok(out)
}

fn tool_call(block: &ContentBlockIn, at: impl Fn(&str) -> String) -> Result<Value, ApiError> {
    let id = block.id.as_deref().ok_or_else(|| ApiError::invalid(at("id"), "Field required"))?;
    let name = block.name.as_deref().ok_or_else(|| ApiError::invalid(at("name"), "Field required"))?;
    let input = match &block.input {
        Some(input @ Value::Object(_)) => input,
        _ => return Err(ApiError::invalid(at("input"), "input must be an object")),
    };
    Ok(json!({"id": id, "type": "function", "function": {"name": name, "arguments": input.to_string()}}))
}

fn tool_result(block: &ContentBlockIn, at: impl Fn(&str) -> String) -> Result<Value, ApiError> {
    let id = block.tool_use_id.as_deref().ok_or_else(|| ApiError::invalid(at("tool_use_id"), "Field required"))?;
    let mut text = match &block.content {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part["type"].as_str(), part["text"].as_str()) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => return Err(ApiError::invalid(at("content"), "tool results may hold text blocks only")),
                }
            }
            text
        }
        Some(_) => return Err(ApiError::invalid(at("content"), "content must be a string or text blocks")),
    };
    if block.is_error == Some(true) {
        text = format!("Error: {text}");
    }
    Ok(json!({"role": "tool", "tool_call_id": id, "content": text}))
}

/// OpenAI `tools` for Anthropic's.
pub fn openai_tools(tools: &[Value]) -> Result<Value, ApiError> {
    let mapped = tools
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let name =
                t["name"].as_str().ok_or_else(|| ApiError::invalid(format!("tools.{i}.name"), "Field required"))?;
            let schema = t
                .get("input_schema")
                .ok_or_else(|| ApiError::invalid(format!("tools.{i}.input_schema"), "Field required"))?;
            let mut function = json!({"name": name, "parameters": schema});
            if let Some(d) = t["description"].as_str() {
                function["description"] = json!(d);
            }
            Ok(json!({"type": "function", "function": function}))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Value::Array(mapped))
}

/// OpenAI `tool_choice` for Anthropic's `{"type": auto|any|tool|none}`.
pub fn openai_tool_choice(choice: &Value) -> Result<Value, ApiError> {
    match choice["type"].as_str() {
        Some("auto") => Ok(json!("auto")),
        Some("any") => Ok(json!("required")),
        Some("none") => Ok(json!("none")),
        Some("tool") => {
            let name =
                choice["name"].as_str().ok_or_else(|| ApiError::invalid("tool_choice.name", "Field required"))?;
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(ApiError::invalid("tool_choice.type", "tool_choice.type must be auto, any, tool or none")),
    }
}
