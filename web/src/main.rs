//! GreenThread's web console: sign in with an API key, then see the
//! project's models and their live state, and manage its API keys.

mod api;
mod keys;
mod models;
mod playground;
mod session;
mod sign_in;
mod usage;

use leptos::prelude::*;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(App);
}

/// The pages behind sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    Models,
    Keys,
    Playground,
    Usage,
}

/// The console: the sign-in form until a key is accepted, then the pages.
#[component]
fn App() -> impl IntoView {
    let key = RwSignal::new(session::load());
    let page = RwSignal::new(Page::Models);
    let sign_out = move |_| {
        session::clear();
        key.set(None);
        page.set(Page::Models);
    };
    let tab = move |target: Page, label: &'static str| {
        view! {
            <button type="button" class="tab" aria-current=move || (page.get() == target).then_some("page")
                on:click=move |_| page.set(target)>{label}</button>
        }
    };
    view! {
        <header class="bar">
            <span class="brand">"GreenThread"</span>
            <Show when=move || key.get().is_some()>
                <nav>{tab(Page::Models, "Models")}{tab(Page::Keys, "API keys")}{tab(Page::Playground, "Playground")}{tab(Page::Usage, "Usage")}</nav>
                <button class="link" on:click=sign_out>"Sign out"</button>
            </Show>
        </header>
        <main>
            {move || match (key.get(), page.get()) {
                (None, _) => view! { <sign_in::SignIn on_signed_in=move |k| key.set(Some(k)) /> }.into_any(),
                (Some(k), Page::Models) => view! { <models::Models key=k /> }.into_any(),
                (Some(k), Page::Keys) => view! { <keys::Keys key=k /> }.into_any(),
                (Some(k), Page::Playground) => view! { <playground::Playground key=k /> }.into_any(),
                (Some(k), Page::Usage) => view! { <usage::Usage key=k /> }.into_any(),
            }}
        </main>
    }
}
