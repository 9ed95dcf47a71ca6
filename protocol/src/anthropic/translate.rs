//! Anthropic Messages ↔ the OpenAI chat surface. A Messages request becomes
//! an OpenAI chat request (which runs in this process or is forwarded to a
//! node unchanged), and the chat answer — whole or streamed — becomes a
//! Messages answer. Pure functions and one small state machine, no IO.

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
        // Usage on every chunk: the prompt's size goes into `message_start`.
        body["stream_options"] = json!({"include_usage": true, "continuous_usage_stats": true});
    }
    Ok(body)
}

/// `end_turn`, `max_tokens`, `tool_use` or `stop_sequence`, from OpenAI's
/// finish reason and the matched stop string (vLLM's `stop_reason`).
fn stop_reason(finish: Option<&str>, matched: Option<&str>) -> (&'static str, Value) {
    match (finish, matched) {
        (Some("length"), _) => ("max_tokens", Value::Null),
        (Some("tool_calls"), _) => ("tool_use", Value::Null),
        (_, Some(s)) => ("stop_sequence", json!(s)),
        _ => ("end_turn", Value::Null),
    }
}

/// The message id for an OpenAI completion id.
pub fn message_id(openai_id: &str) -> String {
    format!("msg_{}", openai_id.strip_prefix("chatcmpl-").unwrap_or(openai_id))
}

/// A whole Messages answer from a whole chat completion.
pub fn message_from_openai(completion: &Value, model: &str) -> Value {
    let choice = &completion["choices"][0];
    let text = choice["message"]["content"].as_str().unwrap_or_default();
    let calls = choice["message"]["tool_calls"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut content: Vec<Value> = Vec::new();
    if !text.is_empty() || calls.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    content.extend(calls.iter().map(blocks::tool_use_block));
    let (reason, sequence) = stop_reason(choice["finish_reason"].as_str(), choice["stop_reason"].as_str());
    json!({
        "id": message_id(completion["id"].as_str().unwrap_or_default()),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": {
            "input_tokens": completion["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
            "output_tokens": completion["usage"]["completion_tokens"].as_u64().unwrap_or(0),
        },
    })
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

/// Turns the OpenAI chunks of one streamed chat answer into Messages events.
pub struct StreamTranslator {
    model: String,
    started: bool,
    /// The content block open now, and whether it is a text block.
    open: Option<(u32, bool)>,
    /// Index of the next content block.
    next_block: u32,
    finished: bool,
}

/// One server-sent event: its name and JSON data.
pub type NamedEvent = (&'static str, Value);

impl StreamTranslator {
    pub fn new(model: &str) -> Self {
        Self { model: model.to_owned(), started: false, open: None, next_block: 0, finished: false }
    }

    /// The events for one `data:` payload of the OpenAI stream.
    pub fn on_data(&mut self, data: &str) -> Vec<NamedEvent> {
        let mut out = Vec::new();
        if data.trim() == "[DONE]" {
            if !self.finished && self.started {
                // The stream ended without a finish chunk: close it as cut short.
                out.extend(self.finish(None, None, 0));
            }
            return out;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else { return out };
        if let Some(error) = chunk.get("error") {
            let message = error["message"].as_str().unwrap_or("the model failed mid-stream");
            out.push(("error", error_body(500, message)));
            self.finished = true;
            return out;
        }
        if !self.started {
            self.started = true;
            let input_tokens = chunk["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
            out.push((
                "message_start",
                json!({"type": "message_start", "message": {
                    "id": message_id(chunk["id"].as_str().unwrap_or_default()), "type": "message", "role": "assistant",
                    "model": self.model, "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": input_tokens, "output_tokens": 0},
                }}),
            ));
        }
        let Some(choice) = chunk["choices"].as_array().and_then(|c| c.first()) else { return out };
        if let Some(text) = choice["delta"]["content"].as_str().filter(|t| !t.is_empty()) {
            let index = self.text_block(&mut out);
            out.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
            ));
        }
        for call in choice["delta"]["tool_calls"].as_array().map(Vec::as_slice).unwrap_or_default() {
            if call.get("id").is_some_and(Value::is_string) {
                let mut block = blocks::tool_use_block(call);
                block["input"] = json!({});
                self.open_block(block, false, &mut out);
            }
            if let (Some((index, false)), Some(partial)) =
                (self.open, call["function"]["arguments"].as_str().filter(|a| !a.is_empty()))
            {
                out.push((
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index,
                           "delta": {"type": "input_json_delta", "partial_json": partial}}),
                ));
            }
        }
        if let Some(finish) = choice["finish_reason"].as_str() {
            let output_tokens = chunk["usage"]["completion_tokens"].as_u64().unwrap_or(0);
            out.extend(self.finish(Some(finish), choice["stop_reason"].as_str(), output_tokens));
        }
        out
    }

    /// The open text block's index, opening one if needed.
    fn text_block(&mut self, out: &mut Vec<NamedEvent>) -> u32 {
        match self.open {
            Some((index, true)) => index,
            _ => self.open_block(json!({"type": "text", "text": ""}), true, out),
        }
    }

    fn open_block(&mut self, block: Value, text: bool, out: &mut Vec<NamedEvent>) -> u32 {
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        out.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        if index == 0 {
            // Where Anthropic's streams send their first keep-alive.
            out.push(("ping", json!({"type": "ping"})));
        }
        self.open = Some((index, text));
        index
    }

    fn close_block(&mut self, out: &mut Vec<NamedEvent>) {
        if let Some((index, _)) = self.open.take() {
            out.push(("content_block_stop", json!({"type": "content_block_stop", "index": index})));
        }
    }

    fn finish(&mut self, finish: Option<&str>, matched: Option<&str>, output_tokens: u64) -> Vec<NamedEvent> {
        let mut out = Vec::new();
        if self.next_block == 0 {
            // An empty answer is still one (empty) text block.
            self.text_block(&mut out);
        }
        self.close_block(&mut out);
        let (reason, sequence) = stop_reason(finish, matched);
        out.push((
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": sequence},
                   "usage": {"output_tokens": output_tokens}}),
        ));
        out.push(("message_stop", json!({"type": "message_stop"})));
        self.finished = true;
        out
    }
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
        assert_eq!(body["stream_options"]["continuous_usage_stats"], true);
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

    #[test]
    fn a_whole_answer_maps_stop_reasons() {
        let completion = |finish: &str, stop: Value| {
            json!({"id": "chatcmpl-abc", "choices": [{"message": {"content": "Hi"}, "finish_reason": finish, "stop_reason": stop}],
                   "usage": {"prompt_tokens": 7, "completion_tokens": 2}})
        };
        let m = message_from_openai(&completion("stop", Value::Null), "m");
        assert_eq!((m["id"].as_str(), m["stop_reason"].as_str()), (Some("msg_abc"), Some("end_turn")));
        assert_eq!(m["usage"], json!({"input_tokens": 7, "output_tokens": 2}));
        assert_eq!(m["content"], json!([{"type": "text", "text": "Hi"}]));
        let m = message_from_openai(&completion("stop", json!("END")), "m");
        assert_eq!((m["stop_reason"].as_str(), m["stop_sequence"].as_str()), (Some("stop_sequence"), Some("END")));
        assert_eq!(message_from_openai(&completion("length", Value::Null), "m")["stop_reason"], "max_tokens");
    }

    #[test]
    fn a_stream_becomes_the_messages_event_sequence() {
        let mut t = StreamTranslator::new("m");
        let usage = |p: u64, c: u64| json!({"prompt_tokens": p, "completion_tokens": c});
        let chunks = [
            json!({"id": "chatcmpl-x", "choices": [{"delta": {"role": "assistant", "content": ""}, "finish_reason": null}], "usage": usage(5, 0)}),
            json!({"id": "chatcmpl-x", "choices": [{"delta": {"content": "Hel"}, "finish_reason": null}], "usage": usage(5, 1)}),
            json!({"id": "chatcmpl-x", "choices": [{"delta": {"content": "lo"}, "finish_reason": null}], "usage": usage(5, 2)}),
            json!({"id": "chatcmpl-x", "choices": [{"delta": {}, "finish_reason": "length"}], "usage": usage(5, 2)}),
            json!({"id": "chatcmpl-x", "choices": [], "usage": usage(5, 2)}),
        ];
        let mut events: Vec<NamedEvent> = chunks.iter().flat_map(|c| t.on_data(&c.to_string())).collect();
        events.extend(t.on_data("[DONE]"));
        let names: Vec<&str> = events.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(events[0].1["message"]["usage"]["input_tokens"], 5);
        assert_eq!(events[0].1["message"]["id"], "msg_x");
        assert_eq!(events[3].1["delta"], json!({"type": "text_delta", "text": "Hel"}));
        assert_eq!(events[6].1["delta"]["stop_reason"], "max_tokens");
        assert_eq!(events[6].1["usage"]["output_tokens"], 2);
    }

    #[test]
    fn an_error_mid_stream_becomes_an_error_event() {
        let mut t = StreamTranslator::new("m");
        t.on_data(
            &json!({"id": "chatcmpl-x", "choices": [{"delta": {"content": ""}}], "usage": {"prompt_tokens": 1}})
                .to_string(),
        );
        let events = t.on_data(&json!({"error": {"message": "node lost"}}).to_string());
        assert_eq!(events[0].0, "error");
        assert_eq!(events[0].1["error"], json!({"type": "api_error", "message": "node lost"}));
        assert!(t.on_data("[DONE]").is_empty());
    }
}
