//! A playground conversation: its turns, the request that carries them with
//! the sampling parameters, the tool calls an answer streams in pieces, and
//! how fast the answer came. Pure, so it is tested without a server.

use serde_json::{Value, json};

/// A tool call of an answer, put together from its streamed pieces.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them (JSON text).
    pub arguments: String,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// `user` or `assistant`.
    pub role: &'static str,
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
}

impl Turn {
    pub fn user(content: &str) -> Self {
        Self { role: "user", content: content.to_owned(), tool_calls: Vec::new() }
    }

    pub fn assistant() -> Self {
        Self { role: "assistant", content: String::new(), tool_calls: Vec::new() }
    }

    /// The turn as a message, or `None` for an answer that was stopped
    /// before it said anything. A tool call cut off mid-arguments is left
    /// out: its partial JSON would have every later request refused.
    fn message(&self) -> Option<Value> {
        let calls: Vec<Value> = self
            .tool_calls
            .iter()
            .filter(|c| !c.name.is_empty() && serde_json::from_str::<Value>(&c.arguments).is_ok())
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
            .collect();
        if self.role == "assistant" && self.content.is_empty() && calls.is_empty() {
            return None;
        }
        let mut m = json!({"role": self.role, "content": self.content});
        if !calls.is_empty() {
            m["tool_calls"] = Value::Array(calls);
        }
        Some(m)
    }
}

/// The sampling parameters as typed; empty ones are left to the server.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sampling {
    pub temperature: String,
    pub top_p: String,
    pub max_tokens: String,
}

impl Sampling {
    /// # Errors
    /// A message naming the parameter that is out of its range.
    pub fn write_into(&self, body: &mut Value) -> Result<(), String> {
        let number = |raw: &str, name: &str, low: f64, high: f64| -> Result<Option<f64>, String> {
            match raw.trim() {
                "" => Ok(None),
                t => t
                    .parse::<f64>()
                    .ok()
                    .filter(|x| (low..=high).contains(x))
                    .map(Some)
                    .ok_or_else(|| format!("{name} is a number from {low} to {high}.")),
            }
        };
        if let Some(t) = number(&self.temperature, "Temperature", 0.0, 2.0)? {
            body["temperature"] = json!(t);
        }
        if let Some(p) = number(&self.top_p, "Top p", 0.0, 1.0)? {
            body["top_p"] = json!(p);
        }
        if let Some(n) = number(&self.max_tokens, "Max tokens", 1.0, 1e6)? {
            if n.fract() != 0.0 {
                return Err("Max tokens is a whole number.".into());
            }
            body["max_tokens"] = json!(n as u64);
        }
        Ok(())
    }
}

/// The streamed chat request for `turns` after the `system` prompt, with
/// `tools` (a JSON array of OpenAI tool definitions, or empty).
///
/// # Errors
/// A message saying which input is wrong.
pub fn request(model: &str, system: &str, turns: &[Turn], sampling: &Sampling, tools: &str) -> Result<Value, String> {
    let mut messages = Vec::with_capacity(turns.len() + 1);
    if !system.trim().is_empty() {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.extend(turns.iter().filter_map(Turn::message));
    let mut body =
        json!({"model": model, "stream": true, "stream_options": {"include_usage": true}, "messages": messages});
    sampling.write_into(&mut body)?;
    if !tools.trim().is_empty() {
        let parsed: Value = serde_json::from_str(tools).map_err(|e| format!("Tools are not JSON: {e}"))?;
        if parsed.as_array().is_none_or(Vec::is_empty) {
            return Err("Tools are a JSON array of tool definitions.".into());
        }
        body["tools"] = parsed;
    }
    Ok(body)
}

/// Adds a streamed `delta.tool_calls` piece to the calls heard so far.
pub fn merge_tool_calls(calls: &mut Vec<ToolCall>, delta: &Value) {
    for piece in delta.as_array().into_iter().flatten() {
        let index = piece["index"].as_u64().map_or(calls.len().saturating_sub(1), |i| i as usize);
        while calls.len() <= index {
            calls.push(ToolCall::default());
        }
        let call = &mut calls[index];
        if let Some(id) = piece["id"].as_str() {
            call.id = id.to_owned();
        }
        if let Some(name) = piece["function"]["name"].as_str() {
            call.name.push_str(name);
        }
        if let Some(arguments) = piece["function"]["arguments"].as_str() {
            call.arguments.push_str(arguments);
        }
    }
}

/// "42 tokens at 31.5 tokens/s": decode speed from the first token to the
/// last, over the tokens after the first (the status line has the time to
/// the first).
pub fn speed_line(first_token_ms: f64, last_token_ms: f64, tokens: u64) -> String {
    let seconds = (last_token_ms - first_token_ms) / 1000.0;
    if tokens < 2 || seconds <= 0.0 {
        return format!("{tokens} tokens");
    }
    format!("{tokens} tokens at {:.1} tokens/s", (tokens - 1) as f64 / seconds)
}
