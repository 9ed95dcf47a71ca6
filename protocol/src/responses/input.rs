//! A Responses request's `input`, read into one stored form of items —
//! messages, function calls and their outputs, each with an id — and those
//! items as the chat messages a model's template renders. The stored form is
//! what a continuation (`previous_response_id`) and `input_items` read back.

use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::ids::random_suffix;

/// An item id: `prefix`, `_` and random alphanumerics.
pub fn item_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_suffix())
}

/// Item kinds the Responses API defines for hosted tools, which GreenThread
/// does not run; refused by name.
const HOSTED_ITEMS: &[&str] = &[
    "file_search_call",
    "web_search_call",
    "computer_call",
    "computer_call_output",
    "image_generation_call",
    "code_interpreter_call",
    "local_shell_call",
    "local_shell_call_output",
    "mcp_call",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "custom_tool_call",
    "custom_tool_call_output",
];

/// `input` as stored items: a string is one user message.
///
/// # Errors
/// [`ApiError`] naming the item (`input[2].call_id`) that is malformed or
/// asks for what GreenThread does not serve (images, files, hosted tools).
pub fn items(input: Option<&Value>) -> Result<Vec<Value>, ApiError> {
    match input {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(vec![message("user", "input_text", text)]),
        Some(Value::Array(list)) => list.iter().enumerate().map(|(i, item)| one_item(i, item)).collect(),
        Some(_) => Err(ApiError::invalid("input", "input: expected a string or a list of items")),
    }
}

fn message(role: &str, part: &str, text: &str) -> Value {
    json!({
        "type": "message", "id": item_id("msg"), "role": role, "status": "completed",
        "content": [{"type": part, "text": text}],
    })
}

fn one_item(i: usize, item: &Value) -> Result<Value, ApiError> {
    let at = |field: &str| format!("input[{i}].{field}");
    let Some(fields) = item.as_object() else {
        return Err(ApiError::invalid(format!("input[{i}]"), format!("input[{i}]: expected an object")));
    };
    let kind = match fields.get("type") {
        None if fields.contains_key("role") => "message",
        Some(Value::String(kind)) => kind.as_str(),
        _ => return Err(ApiError::invalid(at("type"), format!("{}: required, a string", at("type")))),
    };
    let text = |field: &str| -> Result<&str, ApiError> {
        fields
            .get(field)
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid(at(field), format!("{}: required, a string", at(field))))
    };
    match kind {
        "message" => message_item(i, fields),
        "function_call" => {
            let arguments = text("arguments")?;
            if !serde_json::from_str::<Value>(arguments).is_ok_and(|v| v.is_object()) {
                return Err(ApiError::invalid(
                    at("arguments"),
                    format!("{}: must be a JSON-encoded object", at("arguments")),
                ));
            }
            Ok(json!({
                "type": "function_call", "id": fields.get("id").cloned().unwrap_or_else(|| json!(item_id("fc"))),
                "call_id": text("call_id")?, "name": text("name")?, "arguments": arguments, "status": "completed",
            }))
        }
        "function_call_output" => {
            let output = match fields.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => part_texts(&at("output"), parts)?,
                _ => {
                    return Err(ApiError::invalid(
                        at("output"),
                        format!("{}: required, a string or text parts", at("output")),
                    ));
                }
            };
            Ok(json!({
                "type": "function_call_output", "id": fields.get("id").cloned().unwrap_or_else(|| json!(item_id("fco"))),
                "call_id": text("call_id")?, "output": output, "status": "completed",
            }))
        }
        // Reasoning carries nothing a template renders.
        "reasoning" => Ok(json!({"type": "reasoning", "id": item_id("rs"), "summary": []})),
        hosted if HOSTED_ITEMS.contains(&hosted) => Err(ApiError::Unsupported {
            param: "input",
            message: format!("{}: '{hosted}' items belong to hosted tools, which GreenThread does not run", at("type")),
        }),
        "item_reference" => Err(ApiError::Unsupported {
            param: "input",
            message: format!(
                "{}: item references are not supported; continue a conversation with previous_response_id",
                at("type")
            ),
        }),
        other => Err(ApiError::invalid(at("type"), format!("{}: unknown item type {other:?}", at("type")))),
    }
}

fn message_item(i: usize, fields: &Map<String, Value>) -> Result<Value, ApiError> {
    let role = fields.get("role").and_then(Value::as_str).unwrap_or_default();
    if !matches!(role, "user" | "assistant" | "system" | "developer") {
        return Err(ApiError::invalid(
            format!("input[{i}].role"),
            format!("input[{i}].role: one of 'user', 'assistant', 'system' or 'developer', not {role:?}"),
        ));
    }
    let part = if role == "assistant" { "output_text" } else { "input_text" };
    let text = match fields.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => part_texts(&format!("input[{i}].content"), parts)?,
        _ => {
            return Err(ApiError::invalid(
                format!("input[{i}].content"),
                format!("input[{i}].content: required, a string or a list of parts"),
            ));
        }
    };
    let mut item = message(role, part, &text);
    if let Some(id) = fields.get("id").filter(|v| v.is_string()) {
        item["id"] = id.clone();
    }
    Ok(item)
}

/// The text of content parts; images, files and audio are refused.
fn part_texts(at: &str, parts: &[Value]) -> Result<String, ApiError> {
    let mut text = String::new();
    for (j, part) in parts.iter().enumerate() {
        let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "input_text" | "output_text" | "text" | "summary_text" => {
                let t = part.get("text").and_then(Value::as_str).ok_or_else(|| {
                    ApiError::invalid(format!("{at}[{j}].text"), format!("{at}[{j}].text: required, a string"))
                })?;
                text.push_str(t);
            }
            "refusal" => text.push_str(part.get("refusal").and_then(Value::as_str).unwrap_or_default()),
            "input_image" | "input_file" | "input_audio" => {
                return Err(ApiError::Unsupported {
                    param: "input",
                    message: format!("{at}[{j}]: {kind} is not supported; GreenThread's models read text"),
                });
            }
            other => {
                return Err(ApiError::invalid(
                    format!("{at}[{j}].type"),
                    format!("{at}[{j}].type: unknown part {other:?}"),
                ));
            }
        }
    }
    Ok(text)
}

/// The chat messages of `instructions` and stored `items`: consecutive
/// function calls join the assistant message before them, as chat templates
/// expect one assistant turn with its calls.
pub fn chat_messages(instructions: Option<&str>, items: &[Value]) -> Vec<Value> {
    let mut messages: Vec<Value> = Vec::with_capacity(items.len() + 1);
    if let Some(text) = instructions.filter(|t| !t.is_empty()) {
        messages.push(json!({"role": "system", "content": text}));
    }
    for item in items {
        match item["type"].as_str() {
            Some("message") => {
                let role = match item["role"].as_str() {
                    Some("developer") => "system",
                    Some(role) => role,
                    None => continue,
                };
                let text: String =
                    item["content"].as_array().into_iter().flatten().filter_map(|p| p["text"].as_str()).collect();
                messages.push(json!({"role": role, "content": text}));
            }
            Some("function_call") => {
                let call = json!({
                    "id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]},
                });
                match messages.last_mut() {
                    Some(last) if last["role"] == "assistant" => {
                        if !last["tool_calls"].is_array() {
                            last["tool_calls"] = json!([]);
                        }
                        if let Some(calls) = last["tool_calls"].as_array_mut() {
                            calls.push(call);
                        }
                    }
                    _ => messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
                }
            }
            Some("function_call_output") => {
                messages.push(json!({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]}));
            }
            _ => {}
        }
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_is_one_user_message() {
        let items = items(Some(&json!("Hi"))).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["role"], "user");
        assert_eq!(
            chat_messages(Some("Be brief."), &items),
            vec![json!({"role": "system", "content": "Be brief."}), json!({"role": "user", "content": "Hi"}),]
        );
    }

    #[test]
    fn calls_join_the_assistant_turn_and_outputs_become_tool_messages() {
        let input = json!([
            {"role": "developer", "content": [{"type": "input_text", "text": "Use tools."}]},
            {"type": "message", "role": "user", "content": "Weather?"},
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{\"city\":\"Oslo\"}"},
            {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{\"city\":\"Rome\"}"},
            {"type": "function_call_output", "call_id": "c1", "output": "3C"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "20C"}]},
            {"type": "reasoning", "summary": []},
        ]);
        let messages = chat_messages(None, &items(Some(&input)).unwrap());
        assert_eq!(messages.len(), 5);
        assert_eq!(messages[0], json!({"role": "system", "content": "Use tools."}));
        assert_eq!(messages[2]["role"], "assistant");
        assert_eq!(messages[2]["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(messages[2]["tool_calls"][1]["function"]["arguments"], "{\"city\":\"Rome\"}");
        assert_eq!(messages[4], json!({"role": "tool", "tool_call_id": "c2", "content": "20C"}));
    }

    #[test]
    fn what_cannot_be_served_is_refused_naming_the_item() {
        let param = |input: Value| match items(Some(&input)) {
            Err(ApiError::InvalidParam { param, .. }) => param,
            Err(ApiError::Unsupported { message, .. }) => message,
            other => panic!("accepted: {other:?}"),
        };
        assert_eq!(param(json!([{"role": "robot", "content": "x"}])), "input[0].role");
        assert_eq!(param(json!([{"type": "function_call", "name": "f", "arguments": "{}"}])), "input[0].call_id");
        assert_eq!(
            param(json!([{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"}])),
            "input[0].arguments"
        );
        assert!(
            param(json!([{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]))
                .contains("input[0].content[0]")
        );
        assert!(param(json!([{"type": "web_search_call"}])).contains("hosted tools"));
        assert_eq!(param(json!(5)), "input");
    }
}
