//! `response` objects built from what the model generated — its text, the
//! tool calls found in it, how it ended and its token counts — whole, or as
//! the Responses API's stream of typed events, each with its
//! `sequence_number`.

use greenthread_core::FinishReason;
use greenthread_core::grammar::ParsedToolCall;
use serde_json::{Value, json};

use super::input::item_id;
use crate::openai::tools::call_id;

/// One server-sent event: its type (also its `event:` name) and JSON data.
pub type TypedEvent = (&'static str, Value);

/// A response's identity and the request fields it repeats.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub id: String,
    pub created_at: u64,
    pub model: String,
    /// From [`super::translate::echo`].
    pub echo: Value,
}

/// A response id: `resp_` and random alphanumerics.
pub fn response_id() -> String {
    item_id("resp")
}

/// What one whole answer holds: the same as for a Messages answer.
pub use crate::anthropic::answer::Generated;

/// Whether the answer stopped at its token budget rather than its end.
fn cut(finish: &FinishReason) -> bool {
    matches!(finish, FinishReason::MaxTokens | FinishReason::ContextFull)
}

fn usage(input_tokens: u32, output_tokens: u32) -> Value {
    json!({
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    })
}

impl Envelope {
    /// The `response` object in `status` with `output` so far.
    fn object(&self, status: &str, output: &[Value], usage: Option<Value>, error: Option<Value>) -> Value {
        let incomplete = (status == "incomplete").then(|| json!({"reason": "max_output_tokens"}));
        let mut object = json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": error,
            "incomplete_details": incomplete,
            "model": self.model,
            "output": output,
            "usage": usage,
        });
        if let (Some(fields), Some(echo)) = (object.as_object_mut(), self.echo.as_object()) {
            fields.extend(echo.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        object
    }
}

fn message_item(id: &str, status: &str, text: Option<&str>) -> Value {
    let content: Vec<Value> = text.map(text_part).into_iter().collect();
    json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": content})
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn call_item(call: &ParsedToolCall, status: &str, arguments: &str) -> Value {
    json!({
        "type": "function_call", "id": item_id("fc"), "call_id": call_id(),
        "name": call.name, "arguments": arguments, "status": status,
    })
}

/// A whole `response`: a message when there is text (or nothing else), then
/// a `function_call` item per call.
pub fn whole(envelope: &Envelope, answer: Generated) -> Value {
    let mut output = Vec::new();
    if !answer.text.trim().is_empty() || answer.calls.is_empty() {
        output.push(message_item(&item_id("msg"), "completed", Some(&answer.text)));
    }
    for call in &answer.calls {
        output.push(call_item(call, "completed", &call.arguments.to_string()));
    }
    let status = if cut(&answer.finish) { "incomplete" } else { "completed" };
    envelope.object(status, &output, Some(usage(answer.input_tokens, answer.output_tokens)), None)
}

/// The message being streamed: its place in `output`, its id and its text so far.
#[derive(Debug)]
struct OpenText {
    index: usize,
    id: String,
    text: String,
}

/// The Responses stream of one answer, event by event: `response.created`
/// and `response.in_progress`; a message item whose text arrives as
/// `response.output_text.delta`s; a `function_call` item per call with its
/// arguments; then `response.completed` (or `response.incomplete` at the
/// token budget, `response.failed` on an error).
#[derive(Debug)]
pub struct ResponseStream {
    envelope: Envelope,
    sequence: u64,
    output: Vec<Value>,
    open: Option<OpenText>,
    /// Whitespace not yet shown: it opens no message on its own.
    pending: String,
}

impl ResponseStream {
    /// The stream and its opening events.
    pub fn start(envelope: Envelope) -> (Self, Vec<TypedEvent>) {
        let mut stream = Self { envelope, sequence: 0, output: Vec::new(), open: None, pending: String::new() };
        let response = stream.envelope.object("in_progress", &[], None, None);
        let events = vec![
            stream.event("response.created", json!({"response": response})),
            stream.event("response.in_progress", json!({"response": response})),
        ];
        (stream, events)
    }

    fn event(&mut self, kind: &'static str, mut data: Value) -> TypedEvent {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        (kind, data)
    }

    /// Text as it comes.
    pub fn text(&mut self, text: &str) -> Vec<TypedEvent> {
        let mut events = Vec::new();
        let delta = if self.open.is_some() {
            text.to_owned()
        } else {
            self.pending.push_str(text);
            if self.pending.trim().is_empty() {
                return events;
            }
            events.extend(self.open_message());
            std::mem::take(&mut self.pending)
        };
        let Some(open) = self.open.as_mut() else { return events };
        open.text.push_str(&delta);
        let data = json!({
            "item_id": open.id, "output_index": open.index, "content_index": 0, "delta": delta, "logprobs": [],
        });
        events.push(self.event("response.output_text.delta", data));
        events
    }

    fn open_message(&mut self) -> Vec<TypedEvent> {
        let open = OpenText { index: self.output.len(), id: item_id("msg"), text: String::new() };
        let (index, id) = (open.index, open.id.clone());
        self.output.push(message_item(&id, "in_progress", None));
        self.open = Some(open);
        vec![
            self.event(
                "response.output_item.added",
                json!({"output_index": index, "item": message_item(&id, "in_progress", None)}),
            ),
            self.event(
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": 0, "part": text_part("")}),
            ),
        ]
    }

    fn close_message(&mut self) -> Vec<TypedEvent> {
        let Some(OpenText { index, id, text }) = self.open.take() else { return Vec::new() };
        let item = message_item(&id, "completed", Some(&text));
        self.output[index] = item.clone();
        vec![
            self.event(
                "response.output_text.done",
                json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
            ),
            self.event(
                "response.content_part.done",
                json!({"item_id": id, "output_index": index, "content_index": 0, "part": text_part(&text)}),
            ),
            self.event("response.output_item.done", json!({"output_index": index, "item": item})),
        ]
    }

    /// A complete tool call: the message before it ends, and the call is one item.
    pub fn tool_call(&mut self, call: &ParsedToolCall) -> Vec<TypedEvent> {
        let mut events = self.close_message();
        self.pending.clear();
        let arguments = call.arguments.to_string();
        let index = self.output.len();
        let mut item = call_item(call, "in_progress", "");
        let id = item["id"].clone();
        events.push(self.event("response.output_item.added", json!({"output_index": index, "item": item})));
        events.push(self.event(
            "response.function_call_arguments.delta",
            json!({"item_id": id, "output_index": index, "delta": arguments}),
        ));
        events.push(self.event(
            "response.function_call_arguments.done",
            json!({"item_id": id, "output_index": index, "name": call.name, "arguments": arguments}),
        ));
        item["arguments"] = json!(arguments);
        item["status"] = json!("completed");
        self.output.push(item.clone());
        events.push(self.event("response.output_item.done", json!({"output_index": index, "item": item})));
        events
    }

    /// The end: the open message closes (an empty one is written when the
    /// answer had nothing else), then the whole response.
    pub fn finish(&mut self, finish: &FinishReason, input_tokens: u32, output_tokens: u32) -> Vec<TypedEvent> {
        let mut events = Vec::new();
        if self.output.is_empty() && self.open.is_none() {
            events.extend(self.open_message());
            let pending = std::mem::take(&mut self.pending);
            if !pending.is_empty() {
                events.extend(self.text(&pending));
            }
        }
        events.extend(self.close_message());
        let (status, kind) =
            if cut(finish) { ("incomplete", "response.incomplete") } else { ("completed", "response.completed") };
        let response = self.envelope.object(status, &self.output, Some(usage(input_tokens, output_tokens)), None);
        events.push(self.event(kind, json!({"response": response})));
        events
    }

    /// A failure mid-stream: `response.failed`, which the SDKs raise.
    pub fn failure(&mut self, message: &str) -> Vec<TypedEvent> {
        let error = json!({"code": "server_error", "message": message});
        let response = self.envelope.object("failed", &self.output, None, Some(error));
        vec![self.event("response.failed", json!({"response": response}))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope { id: "resp_1".into(), created_at: 7, model: "m".into(), echo: json!({"store": true}) }
    }

    fn call() -> ParsedToolCall {
        ParsedToolCall { name: "w".into(), arguments: json!({"city": "Oslo"}) }
    }

    #[test]
    fn a_whole_answer_has_its_text_then_its_calls() {
        let answer = Generated {
            text: "\n".into(),
            calls: vec![call()],
            finish: FinishReason::EndOfTurn,
            input_tokens: 3,
            output_tokens: 4,
        };
        let body = whole(&envelope(), answer);
        assert_eq!(body["status"], "completed");
        assert_eq!(body["store"], true);
        assert_eq!(body["output"].as_array().unwrap().len(), 1, "whitespace beside a call is no message");
        assert_eq!(body["output"][0]["arguments"], "{\"city\":\"Oslo\"}");
        assert_eq!(body["usage"]["total_tokens"], 7);
        let cut = whole(
            &envelope(),
            Generated {
                text: "abc".into(),
                calls: vec![],
                finish: FinishReason::MaxTokens,
                input_tokens: 1,
                output_tokens: 1,
            },
        );
        assert_eq!(cut["status"], "incomplete");
        assert_eq!(cut["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(cut["output"][0]["content"][0]["text"], "abc");
    }

    #[test]
    fn a_stream_numbers_its_events_and_ends_with_the_whole_response() {
        let (mut stream, mut events) = ResponseStream::start(envelope());
        events.extend(stream.text(" "));
        events.extend(stream.text("Hi"));
        events.extend(stream.tool_call(&call()));
        events.extend(stream.finish(&FinishReason::EndOfTurn, 2, 5));
        let kinds: Vec<&str> = events.iter().map(|e| e.0).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, (kind, data)) in events.iter().enumerate() {
            assert_eq!(data["sequence_number"], i as u64);
            assert_eq!(data["type"], *kind);
        }
        assert_eq!(events[4].1["delta"], " Hi");
        let done = &events[12].1["response"];
        assert_eq!(done["output"][0]["content"][0]["text"], " Hi");
        assert_eq!(done["output"][1]["name"], "w");
        assert_eq!(done["output"][1]["call_id"], events[11].1["item"]["call_id"]);
    }

    #[test]
    fn an_empty_answer_still_has_a_message_and_a_cut_one_is_incomplete() {
        let (mut stream, _) = ResponseStream::start(envelope());
        let events = stream.finish(&FinishReason::MaxTokens, 1, 1);
        let last = &events.last().unwrap().1;
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(last["response"]["output"][0]["type"], "message");
        assert_eq!(last["response"]["output"][0]["content"][0]["text"], "");
    }
}
