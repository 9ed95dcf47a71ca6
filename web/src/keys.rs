//! API keys: create one in a project, with its scopes, expiry and limits
//! (its secret shown once, with a copy button), revoke one, see each key's
//! project, scopes, limits, expiry and when it was last used.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, KeyListing, KeyRow, Limits, NewKey};
use crate::{format, remote};

/// Scopes a key created here may get (admin keys are made by admins elsewhere).
const SCOPES: &[&str] = &["inference", "read", "manage"];

#[component]
pub fn Keys(key: String) -> impl IntoView {
    let listing = RwSignal::new(None::<Result<KeyListing, String>>);
    let secret = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let name = RwSignal::new(String::new());
    let chosen = RwSignal::new(vec!["inference".to_owned()]);
    let project = RwSignal::new(String::new());
    let expires = RwSignal::new(String::new());
    let requests = RwSignal::new(String::new());
    let tokens = RwSignal::new(String::new());
    let concurrent = RwSignal::new(String::new());
    let key = StoredValue::new(key);
    let reload = move || {
        let k = key.get_value();
        spawn_local(async move { listing.set(Some(api::keys(&k).await)) });
    };
    reload();

    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(Ok(known)) = listing.get_untracked() else { return };
        let (label, scopes) = (name.get_untracked().trim().to_owned(), chosen.get_untracked());
        if label.is_empty() || scopes.is_empty() {
            error.set(Some("Give the key a name and at least one scope.".into()));
            return;
        }
        let limits = match limits_of(&requests.get_untracked(), &tokens.get_untracked(), &concurrent.get_untracked()) {
            Ok(limits) => limits,
            Err(e) => {
                error.set(Some(e));
                return;
            }
        };
        let chosen_project = Some(project.get_untracked()).filter(|p| !p.is_empty()).unwrap_or(known.project);
        let new = NewKey {
            project: chosen_project,
            name: label,
            scopes,
            expires_at: expiry(&expires.get_untracked()),
            limits,
        };
        let k = key.get_value();
        spawn_local(async move {
            match api::create_key(&k, &new).await {
                Ok(s) => {
                    secret.set(Some(s));
                    error.set(None);
                    name.set(String::new());
                    for field in [expires, requests, tokens, concurrent] {
                        field.set(String::new());
                    }
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
            <form class="key-form" novalidate=true on:submit=create>
                <div class="row">
                    <label for="key-name">"Name"</label>
                    <input id="key-name" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) />
                    <label for="key-project">"Project"</label>
                    <select id="key-project" prop:value=move || project.get() on:change=move |ev| project.set(event_target_value(&ev))>
                        {move || match listing.get() {
                            Some(Ok(l)) => l.projects.into_iter().map(|p| view! { <option value=p.clone()>{p.clone()}</option> }).collect_view().into_any(),
                            _ => ().into_any(),
                        }}
                    </select>
                    <fieldset class="inline"><legend>"Scopes"</legend><ScopeChoices chosen=chosen /></fieldset>
                </div>
                <div class="row">
                    <span class="field"><label for="key-expires">"Expires (optional)"</label>
                    <input id="key-expires" type="date" prop:value=move || expires.get() on:input=move |ev| expires.set(event_target_value(&ev)) /></span>
                    <span class="field"><label for="key-rpm">"Requests per minute"</label>
                    <input id="key-rpm" type="number" min="1" placeholder="unlimited" prop:value=move || requests.get()
                        on:input=move |ev| requests.set(event_target_value(&ev)) /></span>
                    <span class="field"><label for="key-tpm">"Tokens per minute"</label>
                    <input id="key-tpm" type="number" min="1" placeholder="unlimited" prop:value=move || tokens.get()
                        on:input=move |ev| tokens.set(event_target_value(&ev)) /></span>
                    <span class="field"><label for="key-concurrent">"At once"</label>
                    <input id="key-concurrent" type="number" min="1" placeholder="unlimited" prop:value=move || concurrent.get()
                        on:input=move |ev| concurrent.set(event_target_value(&ev)) /></span>
                    <button type="submit">"Create key"</button>
                </div>
            </form>
            <p class="error" role="alert">{move || error.get()}</p>
            <NewSecret secret=secret />
            {move || remote::show(listing.get(), |l| l.rows.is_empty(), "No keys yet.", move |l: KeyListing| {
                view! { <KeyTable rows=l.rows revoke=revoke /> }.into_any()
            })}
        </section>
    }
}

/// The limits typed into the form: each empty (unlimited) or a whole number from 1.
///
/// # Errors
/// A message naming the field that is not.
pub fn limits_of(requests: &str, tokens: &str, concurrent: &str) -> Result<Limits, String> {
    let parse = |text: &str, what: &str| -> Result<Option<i64>, String> {
        match text.trim() {
            "" => Ok(None),
            t => t
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 1)
                .map(Some)
                .ok_or_else(|| format!("{what} is a whole number from 1, or empty for unlimited.")),
        }
    };
    Ok(Limits {
        requests_per_minute: parse(requests, "Requests per minute")?,
        tokens_per_minute: parse(tokens, "Tokens per minute")?,
        max_concurrent_requests: parse(concurrent, "At once")?,
    })
}

/// A date from the form (`YYYY-MM-DD`) as the end of that day in UTC; `None` when empty.
pub fn expiry(date: &str) -> Option<String> {
    let date = date.trim();
    (!date.is_empty()).then(|| format!("{date}T23:59:59Z"))
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
            <thead><tr><th>"Name"</th><th>"Key"</th><th>"Project"</th><th>"Scopes"</th><th>"Limits"</th><th>"Expires"</th><th>"Last used"</th><th><span class="sr-only">"Actions"</span></th></tr></thead>
            <tbody>
                {rows.into_iter().map(|k| {
                    let id = k.id.clone();
                    let revoked = k.revoked_at.is_some();
                    view! {
                        <tr data-key=k.name.clone()>
                            <td>{k.name.clone()}</td>
                            <td><code>{k.hint.clone()}</code></td>
                            <td>{k.project.clone()}</td>
                            <td>{k.scopes.join(", ")}</td>
                            <td class="limits">{k.limits.describe()}</td>
                            <td class="expires">{k.expires_at.as_deref().map_or_else(|| "never".to_owned(), |at| at.chars().take(10).collect())}</td>
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
