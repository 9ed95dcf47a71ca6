//! Sign-in: an API key with the `read` or `manage` scope, checked against
//! the server before it is kept.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::{api, session};

#[component]
pub fn SignIn(on_signed_in: impl Fn(String) + Clone + 'static) -> impl IntoView {
    let key = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let candidate = key.get_untracked().trim().to_owned();
        if candidate.is_empty() {
            error.set(Some("Paste an API key.".into()));
            return;
        }
        busy.set(true);
        error.set(None);
        let on_signed_in = on_signed_in.clone();
        spawn_local(async move {
            match api::viewer(&candidate).await {
                Ok(v) if v.scopes.iter().any(|s| s == "read" || s == "manage" || s == "admin") => {
                    session::save(&candidate);
                    on_signed_in(candidate);
                }
                Ok(_) => error.set(Some("This key may only call models; the console needs `read` or `manage`.".into())),
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };
    view! {
        <form class="card sign-in" on:submit=submit>
            <h1>"Sign in"</h1>
            <label for="key">"API key"</label>
            <input id="key" type="password" autocomplete="off" autofocus placeholder="gt_…"
                prop:value=move || key.get() on:input=move |ev| key.set(event_target_value(&ev)) />
            <button type="submit" disabled=move || busy.get()>
                {move || if busy.get() { "Checking…" } else { "Sign in" }}
            </button>
            <p class="error" role="alert">{move || error.get()}</p>
        </form>
    }
}
