//! One streamed chat completion, read event by event: its head, the
//! stream's comments (a wake's progress), content, tool-call pieces and the
//! closing usage. Aborting `signal` ends it; the server then stops generating.

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::sse::SseReader;

/// The header in which the server says how long a request waited for its model.
const WAKE_WAIT_HEADER: &str = "x-greenthread-wake-wait-ms";

/// What a streamed answer tells besides its text.
pub enum Heard<'a> {
    /// The answer's head: the server's wake wait (if it could say yet) and the request's id.
    Head {
        wake_wait_ms: Option<f64>,
        request_id: Option<String>,
    },
    /// A comment line of the stream (the wake's progress).
    Comment(&'a str),
    Text(&'a str),
    /// A `delta.tool_calls` piece.
    ToolCalls(&'a serde_json::Value),
    /// The closing chunk's count of generated tokens.
    Usage {
        completion_tokens: u64,
    },
}

/// Streams the chat completion `body`, telling `heard` what arrives.
///
/// # Errors
/// The server's refusal or a broken stream (also when `signal` aborts it).
pub async fn stream_chat(
    key: &str,
    body: &serde_json::Value,
    signal: &web_sys::AbortSignal,
    mut heard: impl FnMut(Heard<'_>),
) -> Result<(), String> {
    let response = gloo_net::http::Request::post("/v1/chat/completions")
        .header("authorization", &format!("Bearer {key}"))
        .abort_signal(Some(signal))
        .json(body)
        .map_err(|e| e.to_string())?
        .send()
        .await
        .map_err(|e| format!("the server cannot be reached: {e}"))?;
    if !response.ok() {
        let error: serde_json::Value = response.json().await.unwrap_or_default();
        return Err(error["error"]["message"].as_str().unwrap_or("the request failed").to_owned());
    }
    heard(Heard::Head {
        wake_wait_ms: response.headers().get(WAKE_WAIT_HEADER).and_then(|v| v.parse().ok()),
        request_id: response.headers().get("x-request-id"),
    });
    let reader: web_sys::ReadableStreamDefaultReader = response
        .body()
        .ok_or("the answer has no body")?
        .get_reader()
        .dyn_into()
        .map_err(|_| "the answer cannot be read as a stream")?;
    let mut events = SseReader::default();
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(|_| "the stream broke off")?;
        let done = js_sys::Reflect::get(&chunk, &"done".into()).ok().and_then(|d| d.as_bool()).unwrap_or(true);
        if done {
            return Ok(());
        }
        let value = js_sys::Reflect::get(&chunk, &"value".into()).map_err(|_| "unreadable chunk")?;
        let data = events.push(&js_sys::Uint8Array::new(&value).to_vec());
        for comment in events.take_comments() {
            heard(Heard::Comment(&comment));
        }
        for data in data {
            if data == "[DONE]" {
                return Ok(());
            }
            let chunk: serde_json::Value = serde_json::from_str(&data).map_err(|e| e.to_string())?;
            if let Some(message) = chunk["error"]["message"].as_str() {
                return Err(message.to_owned());
            }
            let delta = &chunk["choices"][0]["delta"];
            if let Some(piece) = delta["content"].as_str().filter(|p| !p.is_empty()) {
                heard(Heard::Text(piece));
            }
            if delta["tool_calls"].is_array() {
                heard(Heard::ToolCalls(&delta["tool_calls"]));
            }
            if let Some(n) = chunk["usage"]["completion_tokens"].as_u64() {
                heard(Heard::Usage { completion_tokens: n });
            }
        }
    }
}
