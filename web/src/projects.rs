//! Projects and their services: which models each service holds and the
//! custom domains that route to it. A manage key may add a service and a
//! domain; an admin key may add a project, and delete one once its name is
//! typed.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::admin::{self, Projects as Listing};
use crate::domains::Domains;
use crate::remote;

#[component]
pub fn Projects(key: String, may_manage: bool) -> impl IntoView {
    let listing = RwSignal::new(None::<Result<Listing, String>>);
    // Why the last deletion of a service was refused (a service that still holds models).
    let failure = RwSignal::new(None::<String>);
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
            <p class="error" role="alert" data-service-error>{move || failure.get()}</p>
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
                                <td>{may_manage.then(|| {
                                    let (project, service) = (p.name.clone(), s.name.clone());
                                    view! {
                                        <button type="button" class="link" on:click=move |_| {
                                            let (k, project, service) = (key.get_value(), project.clone(), service.clone());
                                            spawn_local(async move {
                                                match admin::delete_service(&k, &project, &service).await {
                                                    Ok(()) => reload(),
                                                    Err(e) => {
                                                        failure.try_set(Some(e));
                                                    }
                                                }
                                            });
                                        }>"Delete"</button>
                                    }
                                })}</td>
                            </tr>
                        }
                    }).collect_view();
                    let doomed = p.name.clone();
                    view! {
                        <article class="project" data-project=p.name.clone()>
                            <div class="title-row">
                                <h2>{p.name.clone()}</h2>
                                {may_manage.then(|| view! { <DeleteProject key=key.get_value() name=doomed on_deleted=reload /> })}
                            </div>
                            <p class="muted">{p.description.clone()}</p>
                            <div class="scroll">
                            <table>
                                <thead><tr><th>"Service"</th><th>"Description"</th><th>"Models"</th><th>"Domains"</th><th><span class="sr-only">"Actions"</span></th></tr></thead>
                                <tbody>{services}</tbody>
                            </table>
                            </div>
                        </article>
                    }
                }).collect_view().into_any()
            })}
            {move || match listing.get() {
                Some(Ok(l)) => Some(view! { <Domains key=key.get_value() listing=l may_manage on_changed=reload /> }),
                _ => None,
            }}
            {may_manage.then(|| view! { <NewService key=key.get_value() listing on_created=reload /> })}
            {may_manage.then(|| view! { <NewProject key=key.get_value() on_created=reload /> })}
        </section>
    }
}

/// Adds a project (the server allows it to admin keys, and says so to others).
#[component]
fn NewProject(key: String, on_created: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let description = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let key = StoredValue::new(key);
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (n, d) = (name.get_untracked().trim().to_owned(), description.get_untracked());
        if n.is_empty() {
            error.set(Some("Name the project.".into()));
            return;
        }
        spawn_local(async move {
            match admin::create_project(&key.get_value(), &n, &d).await {
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
        });
    };
    view! {
        <form class="stack new-project" on:submit=create>
            <h2>"New project"</h2>
            <label for="project-name">"Project name"</label>
            <input id="project-name" placeholder="research" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) />
            <label for="project-description">"Project description"</label>
            <input id="project-description" prop:value=move || description.get() on:input=move |ev| description.set(event_target_value(&ev)) />
            <p class="error" role="alert">{move || error.get()}</p>
            <button type="submit">"Create project"</button>
        </form>
    }
}

/// Deletes a project, with everything in it, once its name is typed again.
#[component]
fn DeleteProject(key: String, name: String, on_deleted: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let asking = RwSignal::new(false);
    let typed = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let key = StoredValue::new(key);
    let name = StoredValue::new(name);
    let confirm = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if typed.get_untracked() != name.get_value() {
            return;
        }
        spawn_local(async move {
            match admin::delete_project(&key.get_value(), &name.get_value()).await {
                Ok(()) => on_deleted(),
                Err(e) => {
                    error.try_set(Some(e));
                }
            }
        });
    };
    view! {
        <Show when=move || asking.get() fallback=move || view! {
            <button type="button" class="link" on:click=move |_| asking.set(true)>"Delete project"</button>
        }>
            <form class="row confirm-delete" on:submit=confirm>
                <label for=move || format!("delete-{}", name.get_value())>
                    {move || format!("Deleting removes its models, services and keys. Type {} to confirm", name.get_value())}
                </label>
                <input id=move || format!("delete-{}", name.get_value()) prop:value=move || typed.get()
                    on:input=move |ev| typed.set(event_target_value(&ev)) />
                <button type="submit" disabled=move || typed.get() != name.get_value()>"Delete for good"</button>
                <button type="button" class="link" on:click=move |_| { asking.set(false); typed.set(String::new()); }>"Cancel"</button>
                <span class="error" role="alert">{move || error.get()}</span>
            </form>
        </Show>
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
