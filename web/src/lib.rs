//! GreenThread's web console: sign in with an API key, then see the
//! project's models live and act on them (deploy, edit, remove; a page per
//! model), its projects, services and domains, the
//! nodes, API keys, usage charts, the audit log, and playgrounds: chat,
//! speech to text, text to speech and reranking.

pub mod api;
pub mod audit;
pub mod chart;
pub mod deploy;
pub mod domains;
pub mod engine_log;
pub mod format;
pub mod keys;
pub mod live;
pub mod model_page;
pub mod models;
pub mod nodes;
pub mod playground;
pub mod projects;
pub mod remote;
pub mod session;
pub mod sign_in;
pub mod speech;
pub mod sse;
pub mod usage;

use leptos::prelude::*;
use leptos::task::spawn_local;

/// Mounts the console on the page's body.
pub fn start() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(App);
}

/// The pages behind sign-in, each at its own `#/slug` so reloads and the
/// back button keep the place (the key never goes in the URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Models,
    Projects,
    Nodes,
    Keys,
    Usage,
    Audit,
    Playground,
}

impl Page {
    pub const ALL: [Page; 7] =
        [Page::Models, Page::Projects, Page::Nodes, Page::Keys, Page::Usage, Page::Audit, Page::Playground];

    pub fn slug(self) -> &'static str {
        match self {
            Page::Models => "models",
            Page::Projects => "projects",
            Page::Nodes => "nodes",
            Page::Keys => "keys",
            Page::Usage => "usage",
            Page::Audit => "audit",
            Page::Playground => "playground",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Page::Models => "Models",
            Page::Projects => "Projects",
            Page::Nodes => "Nodes",
            Page::Keys => "API keys",
            Page::Usage => "Usage",
            Page::Audit => "Audit log",
            Page::Playground => "Playground",
        }
    }

    /// The page a URL fragment names; the models page for anything else.
    pub fn from_hash(hash: &str) -> Page {
        let slug = hash.trim_start_matches('#').trim_start_matches('/');
        Page::ALL.into_iter().find(|p| p.slug() == slug).unwrap_or(Page::Models)
    }
}

fn current_hash() -> String {
    web_sys::window().and_then(|w| w.location().hash().ok()).unwrap_or_default()
}

fn current_page() -> Page {
    Page::from_hash(&current_hash())
}

/// The console: the sign-in form until a key is accepted, then the pages.
#[component]
pub fn App() -> impl IntoView {
    let key = RwSignal::new(session::load());
    let viewer = RwSignal::new(None::<Result<api::Viewer, String>>);
    let page = RwSignal::new(current_page());
    // One model's page is under the models tab: `#/models/<name>`.
    let model = RwSignal::new(model_page::model_of(&current_hash()));
    let on_hash = leptos::prelude::window_event_listener(leptos::ev::hashchange, move |_| {
        // Only what changed is set, the model first: going from one model's page to another's
        // (or back to the list) mounts the new page once.
        let (next_model, next_page) = (model_page::model_of(&current_hash()), current_page());
        batch(|| {
            if model.get_untracked() != next_model {
                model.set(next_model);
            }
            if page.get_untracked() != next_page {
                page.set(next_page);
            }
        });
    });
    on_cleanup(move || on_hash.remove());
    Effect::new(move |_| {
        if let Some(k) = key.get() {
            viewer.set(None);
            spawn_local(async move {
                viewer.try_set(Some(api::viewer(&k).await));
            });
        }
    });
    let sign_out = move |_| {
        session::clear();
        key.set(None);
        viewer.set(None);
    };
    let is_admin = move || matches!(viewer.get(), Some(Ok(v)) if v.is_admin());
    let tab = move |target: Page| {
        view! {
            <a class="tab" href=format!("#/{}", target.slug()) aria-current=move || (page.get() == target).then_some("page")>
                {target.label()}
            </a>
        }
    };
    view! {
        <header class="bar">
            <span class="brand">"GreenThread"</span>
            <Show when=move || key.get().is_some()>
                <nav>
                    {Page::ALL.into_iter().map(|p| view! {
                        <Show when=move || p != Page::Nodes || is_admin()>{tab(p)}</Show>
                    }).collect_view()}
                </nav>
                <button class="link" on:click=sign_out>"Sign out"</button>
            </Show>
        </header>
        <main>
            {move || match (key.get(), viewer.get()) {
                (None, _) => view! { <sign_in::SignIn on_signed_in=move |k| key.set(Some(k)) /> }.into_any(),
                (Some(_), None) => view! { <p class="muted loading" aria-busy="true">"Loading…"</p> }.into_any(),
                (Some(_), Some(Err(e))) => view! {
                    <section class="card">
                        <p class="error" role="alert">{format!("This key no longer works: {e}")}</p>
                        <button on:click=sign_out>"Sign in again"</button>
                    </section>
                }.into_any(),
                (Some(k), Some(Ok(v))) => {
                    let manage = v.may_manage();
                    match page.get() {
                        Page::Models => match model.get() {
                            Some(name) => view! { <model_page::ModelPage key=k name may_manage=manage /> }.into_any(),
                            None => view! { <models::Models key=k may_manage=manage /> }.into_any(),
                        },
                        Page::Projects => view! { <projects::Projects key=k may_manage=manage /> }.into_any(),
                        Page::Nodes => view! { <nodes::Nodes key=k /> }.into_any(),
                        Page::Keys => view! { <keys::Keys key=k /> }.into_any(),
                        Page::Usage => view! { <usage::Usage key=k /> }.into_any(),
                        Page::Audit => view! { <audit::Audit key=k /> }.into_any(),
                        Page::Playground => view! {
                            <playground::Playground key=k.clone() />
                            <div class="playgrounds">
                                <speech::SpeechToText key=k.clone() />
                                <speech::TextToSpeech key=k.clone() />
                                <speech::Rerank key=k />
                            </div>
                        }.into_any(),
                    }
                }
            }}
        </main>
    }
}
