//! A Responses request as an OpenAI chat request, validated and run like any
//! chat request, and the request fields a `response` object repeats.

use serde_json::{Value, json};

use super::input::chat_messages;
use super::types::ResponsesRequest;
use crate::error::ApiError;

/// Tool types the Responses API runs on OpenAI's side; GreenThread offers
/// only the caller's own function tools.
const HOSTED_TOOLS: &[&str] = &[
    "web_search",
    "web_search_preview",
    "file_search",
    "computer_use_preview",
    "code_interpreter",
    "image_generation",
    "mcp",
    "local_shell",
    "shell",
    "apply_patch",
    "custom",
];

fn hosted(kind: &str, at: &str) -> ApiError {
    let known = if HOSTED_TOOLS.contains(&kind) { "the hosted tool" } else { "the tool type" };
    ApiError::Unsupported {
        param: "tools",
        message: format!("{at}: {known} {kind:?} is not available in GreenThread; declare function tools"),
    }
}

/// The chat request for `req`, whose conversation so far is `items`
/// (a continuation's earlier turns first) and whose model is `model`.
///
/// # Errors
/// [`ApiError`] naming the field the Responses API would refuse, or a
/// hosted tool GreenThread does not run.
pub fn to_chat(req: &ResponsesRequest, items: &[Value], model: &str) -> Result<Value, ApiError> {
    let messages = chat_messages(req.instructions.as_deref(), items);
    if messages.iter().all(|m| m["role"] == "system") {
        return Err(ApiError::invalid("input", "input: at least one message or function call output is required"));
    }
    let mut body = json!({"model": model, "messages": messages});
    if let Some(max) = req.max_output_tokens {
        if max == 0 {
            return Err(ApiError::invalid("max_output_tokens", "max_output_tokens: must be at least 1"));
        }
        body["max_tokens"] = json!(max);
    }
    if let Some(tools) = req.tools.as_ref().filter(|t| !t.is_empty()) {
        body["tools"] = Value::Array(tools.iter().enumerate().map(|(i, t)| chat_tool(i, t)).collect::<Result<_, _>>()?);
    }
    if let Some(choice) = &req.tool_choice {
        body["tool_choice"] = chat_tool_choice(choice)?;
    }
    if let Some(parallel) = req.parallel_tool_calls {
        body["parallel_tool_calls"] = json!(parallel);
    }
    if let Some(format) = req.text.as_ref().and_then(|t| t.format.as_ref())
        && let Some(response_format) = response_format(format)?
    {
        body["response_format"] = response_format;
    }
    if let Some(t) = req.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(p) = req.top_p {
        body["top_p"] = json!(p);
    }
    if req.stream == Some(true) {
        body["stream"] = json!(true);
    }
    Ok(body)
}

/// A Responses function tool (`{"type":"function","name",…}`) as a chat tool.
fn chat_tool(i: usize, tool: &Value) -> Result<Value, ApiError> {
    let at = format!("tools[{i}]");
    match tool["type"].as_str() {
        Some("function") => {
            let name = tool["name"]
                .as_str()
                .ok_or_else(|| ApiError::invalid(format!("{at}.name"), format!("{at}.name: required, a string")))?;
            let mut function = json!({"name": name});
            for field in ["description", "parameters", "strict"] {
                if !tool[field].is_null() {
                    function[field] = tool[field].clone();
                }
            }
            Ok(json!({"type": "function", "function": function}))
        }
        Some(kind) => Err(hosted(kind, &format!("{at}.type"))),
        None => Err(ApiError::invalid(format!("{at}.type"), format!("{at}.type: required, a string"))),
    }
}

fn chat_tool_choice(choice: &Value) -> Result<Value, ApiError> {
    match choice {
        Value::String(mode) if matches!(mode.as_str(), "auto" | "none" | "required") => Ok(choice.clone()),
        Value::Object(fields) => match fields.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = fields.get("name").and_then(Value::as_str).ok_or_else(|| {
                    ApiError::invalid("tool_choice.name", "tool_choice.name: required, the function's name")
                })?;
                Ok(json!({"type": "function", "function": {"name": name}}))
            }
            Some(kind) => Err(hosted(kind, "tool_choice.type")),
            None => Err(ApiError::invalid("tool_choice.type", "tool_choice.type: required, a string")),
        },
        _ => Err(ApiError::invalid(
            "tool_choice",
            "tool_choice: 'auto', 'none', 'required' or {\"type\":\"function\",\"name\":…}",
        )),
    }
}

/// `text.format` as a chat `response_format` (none for plain text).
fn response_format(format: &Value) -> Result<Option<Value>, ApiError> {
    match format["type"].as_str() {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            if !format["schema"].is_object() {
                return Err(ApiError::invalid(
                    "text.format.schema",
                    "text.format.schema: required, a JSON Schema object",
                ));
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": {
                "name": format["name"].as_str().unwrap_or("response"),
                "schema": format["schema"],
                "strict": format["strict"],
            }})))
        }
        _ => Err(ApiError::invalid("text.format.type", "text.format.type: 'text', 'json_object' or 'json_schema'")),
    }
}

/// The request fields a `response` object repeats, with the API's defaults.
pub fn echo(req: &ResponsesRequest) -> Value {
    json!({
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "parallel_tool_calls": req.parallel_tool_calls.unwrap_or(true),
        "previous_response_id": req.previous_response_id,
        "store": req.stored(),
        "temperature": req.temperature.unwrap_or(1.0),
        "top_p": req.top_p.unwrap_or(1.0),
        "text": {"format": req.text.as_ref().and_then(|t| t.format.clone()).unwrap_or_else(|| json!({"type": "text"}))},
        "tool_choice": req.tool_choice.clone().unwrap_or_else(|| json!("auto")),
        "tools": req.tools.clone().unwrap_or_default(),
        "metadata": req.metadata.clone().unwrap_or_else(|| json!({})),
        "user": req.user,
        "truncation": "disabled",
        "reasoning": {"effort": null, "summary": null},
        "background": false,
        "service_tier": "default",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::responses::input::items;

    fn request(body: Value) -> ResponsesRequest {
        serde_json::from_value(body).unwrap()
    }

    fn chat(body: Value) -> Result<Value, ApiError> {
        let req = request(body);
        to_chat(&req, &items(req.input.as_ref())?, "m")
    }

    #[test]
    fn a_request_becomes_a_chat_request() {
        let body = chat(json!({
            "input": "Hi", "instructions": "Be brief.", "max_output_tokens": 20, "temperature": 0.0, "stream": true,
            "tools": [{"type": "function", "name": "w", "parameters": {"type": "object"}, "strict": true}],
            "tool_choice": {"type": "function", "name": "w"}, "parallel_tool_calls": false,
            "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
        }))
        .unwrap();
        assert_eq!(body["messages"][0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(body["max_tokens"], 20);
        assert_eq!(
            body["tools"][0],
            json!({"type": "function", "function": {"name": "w", "parameters": {"type": "object"}, "strict": true}})
        );
        assert_eq!(body["tool_choice"], json!({"type": "function", "function": {"name": "w"}}));
        assert_eq!(body["parallel_tool_calls"], false);
        assert_eq!(body["response_format"]["json_schema"]["schema"], json!({"type": "object"}));
        assert_eq!(body["stream"], true);
    }

    #[test]
    fn hosted_tools_and_bad_fields_are_refused_by_name() {
        let refused = chat(json!({"input": "x", "tools": [{"type": "web_search"}]}));
        assert!(
            matches!(refused, Err(ApiError::Unsupported { ref message, .. }) if message.contains("\"web_search\""))
        );
        let zero = chat(json!({"input": "x", "max_output_tokens": 0}));
        assert!(matches!(zero, Err(ApiError::InvalidParam { ref param, .. }) if param == "max_output_tokens"));
        let format = chat(json!({"input": "x", "text": {"format": {"type": "json_schema"}}}));
        assert!(matches!(format, Err(ApiError::InvalidParam { ref param, .. }) if param == "text.format.schema"));
        let empty = chat(json!({"input": [], "instructions": "x"}));
        assert!(matches!(empty, Err(ApiError::InvalidParam { ref param, .. }) if param == "input"));
    }

    #[test]
    fn the_echo_carries_the_apis_defaults() {
        let echo = echo(&request(json!({"input": "x"})));
        assert_eq!(echo["store"], true);
        assert_eq!(echo["tool_choice"], "auto");
        assert_eq!(echo["text"]["format"]["type"], "text");
        assert_eq!(echo["parallel_tool_calls"], true);
    }
}
