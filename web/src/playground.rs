//! The chat playground: a message to any model the key may call, the answer
//! streamed token by token, and how long the first token took (a sleeping
//! model wakes for it).

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::api;

#[component]
pub fn Playground(key: String) -> impl IntoView {
    let key = StoredValue::new(key);
    let models = RwSignal::new(Vec::<String>::new());
    let model = RwSignal::new(String::new());
    let prompt = RwSignal::new(String::new());
    let temperature = RwSignal::new("1".to_owned());
    let answer = RwSignal::new(String::new());
    let status = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    spawn_local(async move {
        match api::models(&key.get_value()).await {
            Ok(list) => {
                let names: Vec<String> = list.into_iter().map(|m| m.name).collect();
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
        status.set(Some("Waiting for the model…".into()));
        let k = key.get_value();
        spawn_local(async move {
            let started = js_sys::Date::now();
            let mut first = None;
            let result = stream_chat(&k, &m, &text, t, |piece| {
                if first.is_none() {
                    first = Some(js_sys::Date::now() - started);
                    status.set(Some(format!("First token after {:.0} ms", first.unwrap_or_default())));
                }
                answer.update(|a| a.push_str(piece));
            })
            .await;
            if let Err(e) = result {
                error.set(Some(e));
                status.set(None);
            }
            busy.set(false);
        });
    };
    view! {
        <section class="card">
            <h1>"Playground"</h1>
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
            <pre class="answer" data-answer aria-live="polite">{move || answer.get()}</pre>
        </section>
    }
}

/// Streams a chat answer, calling `on_text` with each piece of content.
async fn stream_chat(
    key: &str,
    model: &str,
    text: &str,
    temperature: f32,
    mut on_text: impl FnMut(&str),
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
    let reader: web_sys::ReadableStreamDefaultReader = response
        .body()
        .ok_or("the answer has no body")?
        .get_reader()
        .dyn_into()
        .map_err(|_| "the answer cannot be read as a stream")?;
    let mut pending = String::new();
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(|_| "the stream broke off")?;
        let done = js_sys::Reflect::get(&chunk, &"done".into()).ok().and_then(|d| d.as_bool()).unwrap_or(true);
        if done {
            return Ok(());
        }
        let value = js_sys::Reflect::get(&chunk, &"value".into()).map_err(|_| "unreadable chunk")?;
        pending.push_str(&String::from_utf8_lossy(&js_sys::Uint8Array::new(&value).to_vec()));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            for data in event.lines().filter_map(|l| l.strip_prefix("data: ")) {
                if data == "[DONE]" {
                    return Ok(());
                }
                let chunk: serde_json::Value = serde_json::from_str(data).map_err(|e| e.to_string())?;
                if let Some(message) = chunk["error"]["message"].as_str() {
                    return Err(message.to_owned());
                }
                if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str().filter(|p| !p.is_empty()) {
                    on_text(piece);
                }
            }
        }
    }
}
