//! Projects and their services: which models each service holds and the
//! custom domains that route to it. A manage key may add a service.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::admin::{self, Projects as Listing};
use crate::remote;

#[component]
pub fn Projects(key: String, may_manage: bool) -> impl IntoView {
    let listing = RwSignal::new(None::<Result<Listing, String>>);
    let key = StoredValue::new(key);
    let reload = move || {
        let k = key.get_value();
        spawn_local(async move {
            listing.try_set(Some(admin::projects(&k).await));
        });
    };
    reload();
    view! {
        <section class="card">
            <h1>"Projects and services"</h1>
            {move || remote::show(listing.get(), |l| l.projects.is_empty(), "No projects.", |l: Listing| {
                l.projects.clone().into_iter().map(|p| {
                    let services = p.services.clone().into_iter().map(|s| {
                        let models: Vec<String> = l.models.iter()
                            .filter(|m| m.project == p.name && m.service == s.name).map(|m| m.model.clone()).collect();
                        let domains: Vec<(String, bool)> = l.domains.iter()
                            .filter(|d| d.project == p.name && d.service == s.name).map(|d| (d.hostname.clone(), d.verified)).collect();
                        view! {
                            <tr data-service=format!("{}/{}", p.name, s.name)>
                                <td>{s.name.clone()}</td>
                                <td>{if s.description.is_empty() { "—".to_owned() } else { s.description.clone() }}</td>
                                <td>{if models.is_empty() { "—".to_owned() } else { models.join(", ") }}</td>
                                <td>{if domains.is_empty() { view! { "—" }.into_any() } else {
                                    domains.into_iter().map(|(host, verified)| view! {
                                        <span class="domain">{host}" "<span class={if verified { "state state-serving" } else { "state" }}>
                                            {if verified { "verified" } else { "unverified" }}</span></span>
                                    }).collect_view().into_any()
                                }}</td>
                            </tr>
                        }
                    }).collect_view();
                    view! {
                        <article class="project" data-project=p.name.clone()>
                            <h2>{p.name.clone()}</h2>
                            <p class="muted">{p.description.clone()}</p>
                            <div class="scroll">
                            <table>
                                <thead><tr><th>"Service"</th><th>"Description"</th><th>"Models"</th><th>"Domains"</th></tr></thead>
                                <tbody>{services}</tbody>
                            </table>
                            </div>
                        </article>
                    }
                }).collect_view().into_any()
            })}
            {may_manage.then(|| view! { <NewService key=key.get_value() listing on_created=reload /> })}
        </section>
    }
}

/// Adds a service to one of the projects on the page.
#[component]
fn NewService(
    key: String,
    listing: RwSignal<Option<Result<Listing, String>>>,
    on_created: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let project = RwSignal::new(String::new());
    let name = RwSignal::new(String::new());
    let description = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let saving = RwSignal::new(false);
    let key = StoredValue::new(key);
    let names = move || match listing.get() {
        Some(Ok(l)) => l.projects.into_iter().map(|p| p.name).collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    Effect::new(move |_| {
        if project.get_untracked().is_empty()
            && let Some(first) = names().into_iter().next()
        {
            project.set(first);
        }
    });
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (p, n, d) = (project.get_untracked(), name.get_untracked().trim().to_owned(), description.get_untracked());
        if p.is_empty() || n.is_empty() {
            error.set(Some("Pick a project and name the service.".into()));
            return;
        }
        saving.set(true);
        spawn_local(async move {
            match admin::create_service(&key.get_value(), &p, &n, &d).await {
                Ok(()) => {
                    error.try_set(None);
                    name.try_set(String::new());
                    description.try_set(String::new());
                    on_created();
                }
                Err(e) => {
                    error.try_set(Some(e));
                }
            }
            saving.try_set(false);
        });
    };
    view! {
        <form class="stack new-service" on:submit=create>
            <h2>"New service"</h2>
            <label for="service-project">"Project"</label>
            <select id="service-project" prop:value=move || project.get() on:change=move |ev| project.set(event_target_value(&ev))>
                {move || names().into_iter().map(|n| view! { <option value=n.clone()>{n.clone()}</option> }).collect_view()}
            </select>
            <label for="service-name">"Name"</label>
            <input id="service-name" placeholder="chat" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) />
            <label for="service-description">"Description"</label>
            <input id="service-description" prop:value=move || description.get() on:input=move |ev| description.set(event_target_value(&ev)) />
            <p class="error" role="alert">{move || error.get()}</p>
            <button type="submit" disabled=move || saving.get()>{move || if saving.get() { "Creating…" } else { "Create service" }}</button>
        </form>
    }
}
