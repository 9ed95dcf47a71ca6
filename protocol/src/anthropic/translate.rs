//! A Messages request as an OpenAI chat request, validated and run like any
//! chat request (the answer is built by [`super::answer`]), and Anthropic's
//! error shape. Pure functions, no IO.

use serde_json::{Value, json};

use super::blocks;
use super::types::{MessagesRequest, SystemField};
use crate::error::ApiError;

/// Anthropic's sampling temperature range (OpenAI's goes to 2).
const MAX_TEMPERATURE: f32 = 1.0;

/// The OpenAI chat request for `req` (whose model is `model`).
///
/// # Errors
/// [`ApiError`] naming the field of anything Anthropic's API would refuse
/// (`max_tokens` missing, a bad role, temperature above 1) or GreenThread
/// does not serve yet (tools, images).
pub fn to_openai(req: &MessagesRequest, model: &str) -> Result<Value, ApiError> {
    let max_tokens = req.max_tokens.ok_or_else(|| ApiError::invalid("max_tokens", "max_tokens: Field required"))?;
    if max_tokens == 0 {
        return Err(ApiError::invalid("max_tokens", "max_tokens: must be at least 1"));
    }
    if req.messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages: at least one message is required"));
    }
    if let Some(t) = req.temperature
        && !(0.0..=MAX_TEMPERATURE).contains(&t)
    {
        return Err(ApiError::invalid("temperature", "temperature: must be between 0 and 1"));
    }
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system {
        let text = match system {
            SystemField::Text(t) => t.clone(),
            SystemField::Blocks(blocks) => blocks::system_text(blocks)?,
        };
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    for (i, m) in req.messages.iter().enumerate() {
        if m.role != "user" && m.role != "assistant" {
            return Err(ApiError::invalid(
                format!("messages.{i}.role"),
                format!("messages.{i}.role: Input should be 'user' or 'assistant', not {:?}", m.role),
            ));
        }
        messages.extend(blocks::openai_messages(i, m)?);
    }
    let mut body = json!({"model": model, "messages": messages, "max_tokens": max_tokens});
    if let Some(tools) = req.tools.as_ref().filter(|t| !t.is_empty()) {
        body["tools"] = blocks::openai_tools(tools)?;
    }
    if let Some(choice) = &req.tool_choice {
        body["tool_choice"] = blocks::openai_tool_choice(choice)?;
        if choice["disable_parallel_tool_use"] == json!(true) {
            body["parallel_tool_calls"] = json!(false);
        }
    }
    if let Some(t) = req.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(p) = req.top_p {
        body["top_p"] = json!(p);
    }
    if let Some(k) = req.top_k {
        body["top_k"] = json!(k);
    }
    if let Some(stop) = req.stop_sequences.as_ref().filter(|s| !s.is_empty()) {
        body["stop"] = json!(stop);
    }
    if req.stream == Some(true) {
        body["stream"] = json!(true);
    }
    Ok(body)
}

/// Anthropic's error `type` for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 405 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

/// Anthropic's error body.
pub fn error_body(status: u16, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type(status), "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> MessagesRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn a_request_becomes_a_chat_request_with_its_system_prompt() {
        let req = request(json!({
            "model": "m", "max_tokens": 10, "system": [{"type": "text", "text": "Be brief."}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}, {"role": "assistant", "content": "Hello"}],
            "stop_sequences": ["\n\n"], "temperature": 0.5, "stream": true,
        }));
        let body = to_openai(&req, "m").unwrap();
        assert_eq!(body["messages"][0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(body["messages"][1], json!({"role": "user", "content": "Hi"}));
        assert_eq!(body["messages"][2], json!({"role": "assistant", "content": "Hello"}));
        assert_eq!(body["stop"], json!(["\n\n"]));
        assert_eq!(body["stream"], true);
    }

    #[test]
    fn what_anthropic_refuses_is_refused_with_the_field() {
        let missing = to_openai(&request(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})), "m");
        assert!(matches!(missing, Err(ApiError::InvalidParam { ref param, .. }) if param == "max_tokens"));
        let role = to_openai(
            &request(json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]})),
            "m",
        );
        assert!(matches!(role, Err(ApiError::InvalidParam { ref param, .. }) if param == "messages.0.role"));
        let hot = to_openai(
            &request(
                json!({"model": "m", "max_tokens": 5, "temperature": 1.5, "messages": [{"role": "user", "content": "x"}]}),
            ),
            "m",
        );
        assert!(matches!(hot, Err(ApiError::InvalidParam { ref param, .. }) if param == "temperature"));
        let image = to_openai(
            &request(
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image"}]}]}),
            ),
            "m",
        );
        assert!(matches!(image, Err(ApiError::Unsupported { .. })));
    }
}
