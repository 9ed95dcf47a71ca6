//! The chat playground: a message to any model the key may call, the answer
//! streamed token by token, the wake's progress while the model wakes (the
//! stream's `: waking …` comments), how long the request waited for the
//! model (the server's measure, from the `x-greenthread-wake-wait-ms`
//! header, or the `: … ready after N ms` comment of a stream that waited),
//! how long the first token took, and the request's id.

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::api;
use crate::format;
use crate::sse::SseReader;

/// The header in which the server says how long a request waited for its model.
const WAKE_WAIT_HEADER: &str = "x-greenthread-wake-wait-ms";

/// The models `key` may call, from `/v1/models`.
async fn callable(key: &str) -> Result<Vec<String>, String> {
    let response = gloo_net::http::Request::get("/v1/models")
        .header("authorization", &format!("Bearer {key}"))
        .send()
        .await
        .map_err(|e| format!("the server cannot be reached: {e}"))?;
    let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    if !response.ok() {
        let why = body["error"]["message"].as_str().unwrap_or("the request failed");
        return Err(format!("This key may not call models: {why}"));
    }
    Ok(body["data"].as_array().into_iter().flatten().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect())
}

/// The wait a waiting stream's `: <model> ready after N ms` comment reports.
pub fn ready_after(comment: &str) -> Option<f64> {
    comment.split_once(" ready after ")?.1.strip_suffix(" ms")?.parse().ok()
}

/// What the status line says once the first token is in.
pub fn timing_line(state_before: Option<&str>, wake_wait_ms: Option<f64>, first_token_ms: f64) -> String {
    let first = format!("first token after {}", format::millis(first_token_ms));
    match (state_before, wake_wait_ms) {
        (Some("serving"), _) | (_, None) => format!("Model was serving; {first}"),
        (Some(state), Some(w)) => {
            format!("Model was {state}: woke in {} (server-measured); {first}", format::millis(w))
        }
        (None, Some(w)) => format!("Waited {} for the model; {first}", format::millis(w)),
    }
}

#[component]
pub fn Playground(key: String) -> impl IntoView {
    let key = StoredValue::new(key);
    let models = RwSignal::new(Vec::<String>::new());
    let model = RwSignal::new(String::new());
    let prompt = RwSignal::new(String::new());
    let temperature = RwSignal::new("1".to_owned());
    let answer = RwSignal::new(String::new());
    let status = RwSignal::new(None::<String>);
    let request_id = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    // A key without the inference scope (the admin key the server prints
    // is one) may call no model: say so, and where to get one that may.
    let needs_inference = RwSignal::new(false);
    spawn_local(async move {
        let k = key.get_value();
        let found = callable(&k).await;
        if found.as_ref().map_or(true, Vec::is_empty)
            && api::viewer(&k).await.is_ok_and(|v| !v.scopes.iter().any(|s| s == "inference"))
        {
            needs_inference.set(true);
            return;
        }
        match found {
            Ok(names) => {
                if let Some(first) = names.first() {
                    model.set(first.clone());
                }
                models.set(names);
            }
            Err(e) => error.set(Some(e)),
        }
    });
    let send = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (m, text) = (model.get_untracked(), prompt.get_untracked());
        if m.is_empty() || text.trim().is_empty() {
            error.set(Some("Pick a model and write a message.".into()));
            return;
        }
        let Ok(t) = temperature.get_untracked().trim().parse::<f32>() else {
            error.set(Some("Temperature is a number from 0 to 2.".into()));
            return;
        };
        busy.set(true);
        error.set(None);
        answer.set(String::new());
        request_id.set(None);
        status.set(Some("Waiting for the model…".into()));
        let k = key.get_value();
        spawn_local(async move {
            if let Err(e) = ask(&k, &m, &text, t, Shown { answer, status, request_id }).await {
                error.set(Some(e));
                status.set(None);
            }
            busy.set(false);
        });
    };
    view! {
        <section class="card">
            <h1>"Playground"</h1>
            <Show when=move || needs_inference.get()>
                <p class="notice" role="status" data-needs-inference>
                    "This key has no "<code>"inference"</code>" scope, so it may call no model and the list below is empty. "
                    <a href="#/keys">"Create a key with the inference scope"</a>
                    " on the API keys page, then sign out and sign in with it."
                </p>
            </Show>
            <form class="stack" on:submit=send>
                <label for="model">"Model"</label>
                <select id="model" on:change=move |ev| model.set(event_target_value(&ev)) prop:value=move || model.get()>
                    {move || models.get().into_iter().map(|m| view! { <option value=m.clone()>{m.clone()}</option> }).collect_view()}
                </select>
                <label for="temperature">"Temperature"</label>
                <input id="temperature" type="number" min="0" max="2" step="0.1" prop:value=move || temperature.get()
                    on:input=move |ev| temperature.set(event_target_value(&ev)) />
                <label for="prompt">"Message"</label>
                <textarea id="prompt" rows="3" prop:value=move || prompt.get() on:input=move |ev| prompt.set(event_target_value(&ev))></textarea>
                <button type="submit" disabled=move || busy.get()>{move || if busy.get() { "Answering…" } else { "Send" }}</button>
            </form>
            <p class="error" role="alert">{move || error.get()}</p>
            <p class="muted" data-status>{move || status.get()}</p>
            <p class="muted" data-request-id>{move || request_id.get().map(|id| format!("Request id: {id}"))}</p>
            <pre class="answer" data-answer aria-live="polite">{move || answer.get()}</pre>
        </section>
    }
}

/// Where the playground shows an answer and what is known about it.
#[derive(Clone, Copy)]
struct Shown {
    answer: RwSignal<String>,
    status: RwSignal<Option<String>>,
    request_id: RwSignal<Option<String>>,
}

/// What a streamed answer tells besides its text.
enum Heard<'a> {
    /// The answer's head: the server's wake wait (if it could say yet) and the request's id.
    Head {
        wake_wait_ms: Option<f64>,
        request_id: Option<String>,
    },
    /// A comment line of the stream (the wake's progress).
    Comment(&'a str),
    Text(&'a str),
}

/// Asks `model` and streams its answer into `shown.answer`; `shown.status`
/// follows the wake and then says whether the model was woken and how long
/// the first words took.
async fn ask(key: &str, model: &str, text: &str, temperature: f32, shown: Shown) -> Result<(), String> {
    let Shown { answer, status, request_id } = shown;
    // The state before asking tells a wake from a wait; a key without read scope just shows the wait.
    let before = api::models(key)
        .await
        .ok()
        .and_then(|list| list.into_iter().find(|row| row.name == model).and_then(|row| row.runtime).map(|rt| rt.state));
    if before.as_deref().is_some_and(|s| s != "serving") {
        status.set(Some("The model is asleep; waking it…".into()));
    }
    let started = js_sys::Date::now();
    let mut first = None;
    let waited = std::cell::Cell::new(None);
    stream_chat(key, model, text, temperature, |heard| match heard {
        Heard::Head { wake_wait_ms, request_id: id } => {
            waited.set(wake_wait_ms);
            request_id.set(id);
        }
        Heard::Comment(line) => match ready_after(line) {
            Some(ms) => waited.set(Some(ms)),
            None if first.is_none() => status.set(Some(format!("{line}…"))),
            None => {}
        },
        Heard::Text(piece) => {
            if first.is_none() {
                let ms = js_sys::Date::now() - started;
                first = Some(ms);
                status.set(Some(timing_line(before.as_deref(), waited.get(), ms)));
            }
            answer.update(|a| a.push_str(piece));
        }
    })
    .await
}

/// Streams a chat answer, telling `heard` its head, its comments and each
/// piece of content.
async fn stream_chat(
    key: &str,
    model: &str,
    text: &str,
    temperature: f32,
    mut heard: impl FnMut(Heard<'_>),
) -> Result<(), String> {
    let body = serde_json::json!({"model": model, "stream": true, "temperature": temperature,
                                  "messages": [{"role": "user", "content": text}]});
    let response = gloo_net::http::Request::post("/v1/chat/completions")
        .header("authorization", &format!("Bearer {key}"))
        .json(&body)
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
            if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str().filter(|p| !p.is_empty()) {
                heard(Heard::Text(piece));
            }
        }
    }
}
