//! Messages answers built from what the model generated — its text, the tool
//! calls found in it, how it ended and its token counts — whole, or as
//! Anthropic's stream of named events. Typed from end to end: nothing here
//! reads another API's answer back.

use greenthread_core::FinishReason;
use greenthread_core::grammar::ParsedToolCall;
use serde_json::{Value, json};

use crate::ids::random_suffix;

/// One server-sent event: its name and JSON data.
pub type NamedEvent = (&'static str, Value);

/// A message id: `msg_` and random alphanumerics.
pub fn message_id() -> String {
    format!("msg_{}", random_suffix())
}

/// How the answer ended, as Anthropic says it: `stop_reason` and `stop_sequence`.
pub fn stop_reason(finish: &FinishReason, called_tools: bool) -> (&'static str, Value) {
    match finish {
        _ if called_tools => ("tool_use", Value::Null),
        FinishReason::MaxTokens | FinishReason::ContextFull | FinishReason::GrammarExhausted => {
            ("max_tokens", Value::Null)
        }
        FinishReason::StopSequence(s) => ("stop_sequence", json!(s)),
        FinishReason::EndOfTurn => ("end_turn", Value::Null),
    }
}

/// A `tool_use` content block for a call found in the output.
pub fn tool_use(call: ParsedToolCall) -> Value {
    json!({"type": "tool_use", "id": format!("toolu_{}", random_suffix()), "name": call.name, "input": call.arguments})
}

/// What one whole answer holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The text beside the tool calls.
    pub text: String,
    pub calls: Vec<ParsedToolCall>,
    pub finish: FinishReason,
    pub input_tokens: u32,
    pub output_tokens: u32,
}

/// A whole Messages answer: a text block (also when empty and no tool was
/// called), then a `tool_use` block per call.
pub fn whole(model: &str, answer: Generated) -> Value {
    let (reason, sequence) = stop_reason(&answer.finish, !answer.calls.is_empty());
    let mut content: Vec<Value> = Vec::new();
    if !answer.text.is_empty() || answer.calls.is_empty() {
        content.push(json!({"type": "text", "text": answer.text}));
    }
    content.extend(answer.calls.into_iter().map(tool_use));
    json!({
        "id": message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens},
    })
}

/// Anthropic's stream of one answer, event by event: `message_start`, a
/// content block per run of text and per tool call (a `ping` after the
/// first block opens, where Anthropic sends its first keep-alive), then
/// `message_delta` and `message_stop`.
#[derive(Debug)]
pub struct MessageStream {
    /// The content block open now, and whether it is a text block.
    open: Option<(u32, bool)>,
    /// Index of the next content block.
    next_block: u32,
    calls: u32,
}

impl MessageStream {
    /// The stream's first event, for an answer to a prompt of `input_tokens`.
    pub fn start(model: &str, input_tokens: u32) -> (Self, NamedEvent) {
        let start = json!({"type": "message_start", "message": {
            "id": message_id(), "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": input_tokens, "output_tokens": 0},
        }});
        (Self { open: None, next_block: 0, calls: 0 }, ("message_start", start))
    }

    /// Events for a piece of text.
    pub fn text(&mut self, text: &str) -> Vec<NamedEvent> {
        let mut out = Vec::new();
        if text.is_empty() {
            return out;
        }
        let index = match self.open {
            Some((index, true)) => index,
            _ => self.open_block(json!({"type": "text", "text": ""}), true, &mut out),
        };
        out.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
        ));
        out
    }

    /// Events for a complete tool call: its block, then its input as one JSON delta.
    pub fn tool_call(&mut self, call: ParsedToolCall) -> Vec<NamedEvent> {
        let mut out = Vec::new();
        let input = call.arguments.to_string();
        let mut block = tool_use(call);
        block["input"] = json!({});
        let index = self.open_block(block, false, &mut out);
        self.calls += 1;
        out.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index,
                   "delta": {"type": "input_json_delta", "partial_json": input}}),
        ));
        out
    }

    /// The closing events, for an answer that ended by `finish` after `output_tokens`.
    pub fn finish(self, finish: &FinishReason, output_tokens: u32) -> Vec<NamedEvent> {
        self.close(finish, json!({"output_tokens": output_tokens}))
    }

    /// The closing events of an answer whose prompt was counted only at the
    /// end (an external engine's): `message_delta` carries both counts.
    pub fn finish_counted(self, finish: &FinishReason, input_tokens: u32, output_tokens: u32) -> Vec<NamedEvent> {
        self.close(finish, json!({"input_tokens": input_tokens, "output_tokens": output_tokens}))
    }

    fn close(mut self, finish: &FinishReason, usage: Value) -> Vec<NamedEvent> {
        let mut out = Vec::new();
        if self.next_block == 0 {
            // An empty answer is still one (empty) text block.
            self.open_block(json!({"type": "text", "text": ""}), true, &mut out);
        }
        self.close_block(&mut out);
        let (reason, sequence) = stop_reason(finish, self.calls > 0);
        out.push((
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": sequence},
                   "usage": usage}),
        ));
        out.push(("message_stop", json!({"type": "message_stop"})));
        out
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
}

/// The event that ends a stream the model failed in.
pub fn failure(message: &str) -> NamedEvent {
    ("error", super::translate::error_body(500, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str) -> ParsedToolCall {
        ParsedToolCall { name: name.into(), arguments: json!({"city": "Paris"}) }
    }

    #[test]
    fn a_whole_answer_maps_stop_reasons_and_blocks() {
        let answer = |text: &str, calls: Vec<ParsedToolCall>, finish| Generated {
            text: text.into(),
            calls,
            finish,
            input_tokens: 7,
            output_tokens: 3,
        };
        let m = whole("m", answer("Hi", vec![], FinishReason::EndOfTurn));
        assert_eq!((m["stop_reason"].clone(), m["content"][0]["text"].clone()), (json!("end_turn"), json!("Hi")));
        assert_eq!(m["usage"], json!({"input_tokens": 7, "output_tokens": 3}));
        assert!(m["id"].as_str().is_some_and(|id| id.starts_with("msg_")));
        let m = whole("m", answer("", vec![], FinishReason::MaxTokens));
        assert_eq!((m["stop_reason"].clone(), m["content"][0]["text"].clone()), (json!("max_tokens"), json!("")));
        let m = whole("m", answer("x", vec![], FinishReason::StopSequence("END".into())));
        assert_eq!((m["stop_reason"].clone(), m["stop_sequence"].clone()), (json!("stop_sequence"), json!("END")));
        let m = whole("m", answer("", vec![call("weather")], FinishReason::MaxTokens));
        assert_eq!(m["stop_reason"], "tool_use", "a call wins over the length limit, as the chat path says tool_calls");
        assert_eq!(m["content"].as_array().map(Vec::len), Some(1), "no empty text block beside a call");
        assert_eq!(
            (m["content"][0]["type"].clone(), m["content"][0]["input"].clone()),
            (json!("tool_use"), json!({"city": "Paris"}))
        );
    }

    #[test]
    fn a_stream_is_the_messages_event_sequence() {
        let (mut s, (name, start)) = MessageStream::start("m", 9);
        assert_eq!((name, start["message"]["usage"]["input_tokens"].clone()), ("message_start", json!(9)));
        let mut events: Vec<NamedEvent> = s.text("Hel");
        events.extend(s.text("lo"));
        events.extend(s.tool_call(call("weather")));
        events.extend(s.finish(&FinishReason::EndOfTurn, 4));
        let names: Vec<&str> = events.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(events[3].1["delta"]["text"], "lo");
        assert_eq!(events[5].1["content_block"]["input"], json!({}), "the input arrives as deltas");
        assert_eq!(events[6].1["delta"]["partial_json"], r#"{"city":"Paris"}"#);
        assert_eq!(events[8].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(events[8].1["usage"]["output_tokens"], 4);
    }

    #[test]
    fn an_empty_stream_still_has_one_text_block_and_failures_are_error_events() {
        let (s, _) = MessageStream::start("m", 1);
        let names: Vec<&str> = s.finish(&FinishReason::EndOfTurn, 0).iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["content_block_start", "ping", "content_block_stop", "message_delta", "message_stop"]);
        let (name, body) = failure("the model failed");
        assert_eq!((name, body["error"]["type"].clone()), ("error", json!("api_error")));
    }
}
