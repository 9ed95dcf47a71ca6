//! API keys of the signed-in key's project: create one (its secret shown
//! once, with a copy button), revoke one, see when each was last used.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, KeyRow};
use crate::{format, remote};

/// Scopes a key created here may get (admin keys are made by admins elsewhere).
const SCOPES: &[&str] = &["inference", "read", "manage"];

#[component]
pub fn Keys(key: String) -> impl IntoView {
    let listing = RwSignal::new(None::<Result<(String, Vec<KeyRow>), String>>);
    let secret = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let name = RwSignal::new(String::new());
    let chosen = RwSignal::new(vec!["inference".to_owned()]);
    let key = StoredValue::new(key);
    let reload = move || {
        let k = key.get_value();
        spawn_local(async move { listing.set(Some(api::keys(&k).await)) });
    };
    reload();

    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(Ok((project, _))) = listing.get_untracked() else { return };
        let (label, scopes) = (name.get_untracked().trim().to_owned(), chosen.get_untracked());
        if label.is_empty() || scopes.is_empty() {
            error.set(Some("Give the key a name and at least one scope.".into()));
            return;
        }
        let k = key.get_value();
        spawn_local(async move {
            match api::create_key(&k, &project, &label, &scopes).await {
                Ok(s) => {
                    secret.set(Some(s));
                    error.set(None);
                    name.set(String::new());
                    reload();
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let revoke = move |id: String| {
        let k = key.get_value();
        spawn_local(async move {
            match api::revoke_key(&k, &id).await {
                Ok(()) => reload(),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <section class="card">
            <h1>"API keys"</h1>
            <form class="row" on:submit=create>
                <label for="key-name">"Name"</label>
                <input id="key-name" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) />
                <ScopeChoices chosen=chosen />
                <button type="submit">"Create key"</button>
            </form>
            <p class="error" role="alert">{move || error.get()}</p>
            <NewSecret secret=secret />
            {move || remote::show(listing.get(), |(_, rows)| rows.is_empty(), "No keys yet.", move |(_, rows)| {
                view! { <KeyTable rows=rows revoke=revoke /> }.into_any()
            })}
        </section>
    }
}

/// A checkbox per scope a new key may get.
#[component]
fn ScopeChoices(chosen: RwSignal<Vec<String>>) -> impl IntoView {
    SCOPES
        .iter()
        .map(|scope| {
            let scope = (*scope).to_owned();
            let s = scope.clone();
            view! {
                <label class="check">
                    <input type="checkbox" prop:checked={let s = s.clone(); move || chosen.get().contains(&s)}
                        on:change=move |ev| {
                            let on = event_target_checked(&ev);
                            chosen.update(|c| { c.retain(|x| x != &s); if on { c.push(s.clone()); } });
                        } />
                    {scope}
                </label>
            }
        })
        .collect_view()
}

/// A new key's secret, shown this once with a copy button.
#[component]
fn NewSecret(secret: RwSignal<Option<String>>) -> impl IntoView {
    let copy = move |_| {
        if let (Some(s), Some(w)) = (secret.get_untracked(), web_sys::window()) {
            let _ = w.navigator().clipboard().write_text(&s);
        }
    };
    view! {
        <Show when=move || secret.get().is_some()>
            <div class="secret" role="status">
                <p>"The new key — copy it now, it is not shown again:"</p>
                <code data-secret>{move || secret.get().unwrap_or_default()}</code>
                <button type="button" on:click=copy>"Copy"</button>
                <button type="button" class="link" on:click=move |_| secret.set(None)>"Done"</button>
            </div>
        </Show>
    }
}

/// The keys, each with when it was last used and a way to revoke it.
#[component]
fn KeyTable(rows: Vec<KeyRow>, revoke: impl Fn(String) + Copy + Send + Sync + 'static) -> impl IntoView {
    view! {
        <div class="scroll">
        <table>
            <thead><tr><th>"Name"</th><th>"Key"</th><th>"Scopes"</th><th>"Last used"</th><th></th></tr></thead>
            <tbody>
                {rows.into_iter().map(|k| {
                    let id = k.id.clone();
                    let revoked = k.revoked_at.is_some();
                    view! {
                        <tr data-key=k.name.clone()>
                            <td>{k.name.clone()}</td>
                            <td><code>{k.hint.clone()}</code></td>
                            <td>{k.scopes.join(", ")}</td>
                            <td title=k.last_used_at.clone().unwrap_or_default()>{format::ago_rfc3339(k.last_used_at.as_deref())}</td>
                            <td>{if revoked {
                                view! { <span class="state state-failed">"revoked"</span> }.into_any()
                            } else {
                                view! { <button type="button" class="link" on:click=move |_| revoke(id.clone())>"Revoke"</button> }.into_any()
                            }}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
        </div>
    }
}
