//! The chat playground: a conversation (a system prompt and several
//! turns) with any model the key may call, with its sampling parameters and
//! tools. Each answer streams token by token, rendered as Markdown with raw
//! HTML shown as text, its tool calls shown; Stop cancels the stream. The
//! status line follows the wake (the stream's `: waking …` comments), says
//! how long the request waited for the model (the server's measure, from
//! the `x-greenthread-wake-wait-ms` header, or the `: … ready after N ms`
//! comment of a stream that waited), the time to the first token and the
//! tokens per second, and the request's id.

pub mod conversation;
pub mod markdown;
mod stream;

use leptos::prelude::*;
use leptos::task::spawn_local;
use send_wrapper::SendWrapper;

use self::conversation::{Sampling, Turn, merge_tool_calls, request, speed_line};
use self::stream::{Heard, stream_chat};
use crate::api;
use crate::format;

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
    let system = RwSignal::new(String::new());
    let tools = RwSignal::new(String::new());
    let prompt = RwSignal::new(String::new());
    let temperature = RwSignal::new("1".to_owned());
    let top_p = RwSignal::new(String::new());
    let max_tokens = RwSignal::new(String::new());
    let turns = RwSignal::new(Vec::<Turn>::new());
    let status = RwSignal::new(None::<String>);
    let speed = RwSignal::new(None::<String>);
    let request_id = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    // The running request's controller: Stop aborts it, and the server stops generating.
    let running = StoredValue::new(None::<SendWrapper<web_sys::AbortController>>);
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
    let send = move || {
        let (m, text) = (model.get_untracked(), prompt.get_untracked());
        if m.is_empty() || text.trim().is_empty() {
            error.set(Some("Pick a model and write a message.".into()));
            return;
        }
        let mut asked = turns.get_untracked();
        asked.push(Turn::user(&text));
        let sampling = Sampling {
            temperature: temperature.get_untracked(),
            top_p: top_p.get_untracked(),
            max_tokens: max_tokens.get_untracked(),
        };
        let body = match request(&m, &system.get_untracked(), &asked, &sampling, &tools.get_untracked()) {
            Ok(b) => b,
            Err(e) => {
                error.set(Some(e));
                return;
            }
        };
        let Ok(controller) = web_sys::AbortController::new() else { return };
        let signal = controller.signal();
        running.set_value(Some(SendWrapper::new(controller)));
        asked.push(Turn::assistant());
        turns.set(asked);
        prompt.set(String::new());
        busy.set(true);
        error.set(None);
        speed.set(None);
        request_id.set(None);
        status.set(Some("Waiting for the model…".into()));
        let k = key.get_value();
        spawn_local(async move {
            let shown = Shown { turns, status, speed, request_id };
            match ask(&k, &m, &body, &signal, shown).await {
                Err(_) if signal.aborted() => {
                    status.set(Some("Stopped.".into()));
                }
                Err(e) => {
                    error.set(Some(e));
                    status.set(None);
                }
                Ok(()) => {}
            }
            running.set_value(None);
            busy.set(false);
        });
    };
    // Leaving the page stops the answer too: the server need not go on generating it.
    on_cleanup(move || {
        if let Some(Some(controller)) = running.try_get_value() {
            controller.abort();
        }
    });
    let stop = move |_| {
        if let Some(controller) = running.get_value() {
            controller.abort();
        }
    };
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        send();
    };
    // Ctrl+Enter (⌘+Enter) sends from the message box; Enter alone is a new line.
    let on_key = move |ev: leptos::ev::KeyboardEvent| {
        if ev.key() == "Enter" && (ev.ctrl_key() || ev.meta_key()) && !busy.get_untracked() {
            ev.prevent_default();
            send();
        }
    };
    let number = |id: &'static str,
                  label: &'static str,
                  (min, max, step): (&'static str, &'static str, &'static str),
                  value: RwSignal<String>| {
        view! {
            <span class="field">
                <label for=id>{label}</label>
                <input id=id type="number" min=min max=max step=step placeholder="default"
                    prop:value=move || value.get() on:input=move |ev| value.set(event_target_value(&ev)) />
            </span>
        }
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
            <form class="stack playground" on:submit=on_submit>
                <div class="fields">
                    <span class="field">
                        <label for="model">"Model"</label>
                        <select id="model" on:change=move |ev| model.set(event_target_value(&ev)) prop:value=move || model.get()>
                            {move || models.get().into_iter().map(|m| view! { <option value=m.clone()>{m.clone()}</option> }).collect_view()}
                        </select>
                    </span>
                    {number("temperature", "Temperature", ("0", "2", "0.1"), temperature)}
                    {number("top-p", "Top p", ("0", "1", "0.05"), top_p)}
                    {number("max-tokens", "Max tokens", ("1", "32768", "1"), max_tokens)}
                </div>
                <label for="system">"System prompt"</label>
                <textarea id="system" rows="2" placeholder="You are a helpful assistant." prop:value=move || system.get()
                    on:input=move |ev| system.set(event_target_value(&ev))></textarea>
                <details>
                    <summary>"Tools"</summary>
                    <label for="tools">"Tools (a JSON array of function definitions, optional)"</label>
                    <textarea id="tools" rows="5" prop:value=move || tools.get() on:input=move |ev| tools.set(event_target_value(&ev))></textarea>
                </details>
                <Conversation turns />
                <label for="prompt">"Message"</label>
                <textarea id="prompt" rows="3" prop:value=move || prompt.get() on:input=move |ev| prompt.set(event_target_value(&ev))
                    on:keydown=on_key></textarea>
                <div class="row">
                    <button type="submit" disabled=move || busy.get()>{move || if busy.get() { "Answering…" } else { "Send" }}</button>
                    <button type="button" class="secondary" disabled=move || !busy.get() on:click=stop>"Stop"</button>
                    <button type="button" class="link" disabled=move || busy.get()
                        on:click=move |_| { turns.set(Vec::new()); status.set(None); speed.set(None); }>"New conversation"</button>
                </div>
            </form>
            <p class="error" role="alert">{move || error.get()}</p>
            <p class="muted" data-status>{move || status.get()}</p>
            <p class="muted" data-speed>{move || speed.get()}</p>
            <p class="muted" data-request-id>{move || request_id.get().map(|id| format!("Request id: {id}"))}</p>
        </section>
    }
}

/// The turns so far; the last answer carries `data-answer`.
#[component]
fn Conversation(turns: RwSignal<Vec<Turn>>) -> impl IntoView {
    view! {
        <ol class="conversation" aria-label="Conversation" aria-live="polite">
            {move || {
                let list = turns.get();
                let last = list.len().saturating_sub(1);
                list.into_iter().enumerate().map(|(i, t)| {
                    let latest = i == last && t.role == "assistant";
                    view! {
                        <li class=format!("turn turn-{}", t.role) data-role=t.role>
                            <span class="who">{if t.role == "user" { "You" } else { "Model" }}</span>
                            {if t.role == "user" {
                                view! { <p class="text">{t.content.clone()}</p> }.into_any()
                            } else {
                                view! { <div class="markdown" data-answer=latest.then_some("") inner_html=markdown::to_html(&t.content)></div> }.into_any()
                            }}
                            {t.tool_calls.into_iter().map(|c| view! {
                                <div class="tool-call" data-tool-call=c.name.clone()>
                                    <span class="muted">"Tool call "</span><code>{format!("{}({})", c.name, c.arguments)}</code>
                                </div>
                            }).collect_view()}
                        </li>
                    }
                }).collect_view()
            }}
        </ol>
    }
}

/// Where the playground shows an answer and what is known about it.
#[derive(Clone, Copy)]
struct Shown {
    turns: RwSignal<Vec<Turn>>,
    status: RwSignal<Option<String>>,
    speed: RwSignal<Option<String>>,
    request_id: RwSignal<Option<String>>,
}

impl Shown {
    fn answer(&self, change: impl FnOnce(&mut Turn)) {
        self.turns.update(|t| {
            if let Some(last) = t.last_mut() {
                change(last);
            }
        });
    }
}

/// Sends `body` and streams the answer into the conversation's last turn;
/// `shown.status` follows the wake and then says whether the model was
/// woken and how long the first words took, `shown.speed` how fast the rest came.
async fn ask(
    key: &str,
    model: &str,
    body: &serde_json::Value,
    signal: &web_sys::AbortSignal,
    shown: Shown,
) -> Result<(), String> {
    let Shown { status, speed, request_id, .. } = shown;
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
    let mut last = started;
    let mut pieces = 0u64;
    let mut tokens = None;
    let waited = std::cell::Cell::new(None);
    let note_first = |at: f64, first: &mut Option<f64>| {
        if first.is_none() {
            *first = Some(at - started);
            status.set(Some(timing_line(before.as_deref(), waited.get(), at - started)));
        }
    };
    stream_chat(key, body, signal, |heard| match heard {
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
            last = js_sys::Date::now();
            note_first(last, &mut first);
            pieces += 1;
            shown.answer(|t| t.content.push_str(piece));
        }
        Heard::ToolCalls(delta) => {
            last = js_sys::Date::now();
            note_first(last, &mut first);
            shown.answer(|t| merge_tool_calls(&mut t.tool_calls, delta));
        }
        Heard::Usage { completion_tokens } => tokens = Some(completion_tokens),
    })
    .await?;
    if let Some(first) = first {
        speed.set(Some(speed_line(first, last - started, tokens.unwrap_or(pieces))));
    }
    Ok(())
}
