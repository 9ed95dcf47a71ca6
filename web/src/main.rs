//! GreenThread's web console: sign in with an API key, then see the
//! project's models and their live state.

mod api;
mod models;
mod session;
mod sign_in;

use leptos::prelude::*;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(App);
}

/// The console: the sign-in form until a key is accepted, then the pages.
#[component]
fn App() -> impl IntoView {
    let key = RwSignal::new(session::load());
    let sign_out = move |_| {
        session::clear();
        key.set(None);
    };
    view! {
        <header class="bar">
            <span class="brand">"GreenThread"</span>
            <Show when=move || key.get().is_some()>
                <button class="link" on:click=sign_out>"Sign out"</button>
            </Show>
        </header>
        <main>
            {move || match key.get() {
                None => view! { <sign_in::SignIn on_signed_in=move |k| key.set(Some(k)) /> }.into_any(),
                Some(k) => view! { <models::Models key=k /> }.into_any(),
            }}
        </main>
    }
}
