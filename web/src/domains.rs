//! Custom domains: bind a hostname to a service, show the TXT record that
//! proves it, verify it once the record is published, remove it.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::admin::{self, DomainRow, Projects as Listing};

/// The domains on the projects page, and (for manage keys) the form that adds one.
#[component]
pub fn Domains(
    key: String,
    listing: Listing,
    may_manage: bool,
    on_changed: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let key = StoredValue::new(key);
    let error = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let act = move |hostname: String, verify: bool| {
        let k = key.get_value();
        error.set(None);
        notice.set(None);
        spawn_local(async move {
            let result = if verify {
                admin::verify_domain(&k, &hostname)
                    .await
                    .map(|_| format!("{hostname} is verified: requests to it are routed."))
            } else {
                admin::remove_domain(&k, &hostname).await.map(|()| format!("{hostname} is removed."))
            };
            match result {
                Ok(m) => {
                    notice.try_set(Some(m));
                    on_changed();
                }
                Err(e) => {
                    error.try_set(Some(e));
                }
            }
        });
    };
    let services: Vec<String> = listing
        .projects
        .iter()
        .flat_map(|p| p.services.iter().map(move |s| format!("{}/{}", p.name, s.name)))
        .collect();
    let domains = listing.domains;
    view! {
        <section class="domains" aria-labelledby="domains-title">
            <h2 id="domains-title">"Custom domains"</h2>
            <p class="notice" role="status">{move || notice.get()}</p>
            <p class="error" role="alert" data-domain-error>{move || error.get()}</p>
            {if domains.is_empty() {
                view! { <p class="muted">"No custom domains yet."</p> }.into_any()
            } else {
                view! {
                    <ul class="domain-list">
                        {domains.into_iter().map(|d| view! { <DomainLine d may_manage act /> }).collect_view()}
                    </ul>
                }.into_any()
            }}
            {may_manage.then(|| view! { <NewDomain key=key.get_value() services on_added=on_changed /> })}
        </section>
    }
}

#[component]
fn DomainLine(
    d: DomainRow,
    may_manage: bool,
    act: impl Fn(String, bool) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let host = StoredValue::new(d.hostname.clone());
    view! {
        <li class="domain-line" data-domain=d.hostname.clone()>
            <div class="row">
                <strong>{d.hostname.clone()}</strong>
                <span class="muted">{format!("→ {}/{}", d.project, d.service)}</span>
                <span class=if d.verified { "state state-serving" } else { "state" } data-verified=d.verified.to_string()>
                    {if d.verified { "verified" } else { "unverified" }}
                </span>
                {may_manage.then(|| view! {
                    {(!d.verified).then(|| view! {
                        <button type="button" class="small" on:click=move |_| act(host.get_value(), true)>"Verify"</button>
                    })}
                    <button type="button" class="small danger" on:click=move |_| act(host.get_value(), false)>"Remove"</button>
                })}
            </div>
            {(!d.verified).then(|| view! {
                <p class="record">"Publish this TXT record, then verify: "
                    <code data-record-name>{d.record_name.clone()}</code>" TXT "<code data-record-value>{d.record_value.clone()}</code>
                </p>
            })}
        </li>
    }
}

/// Binds a new hostname to one of the services on the page.
#[component]
fn NewDomain(key: String, services: Vec<String>, on_added: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let service = RwSignal::new(services.first().cloned().unwrap_or_default());
    let hostname = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let key = StoredValue::new(key);
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let chosen = service.get_untracked();
        let Some((project, service)) = chosen.split_once('/') else {
            error.set(Some("Pick a service.".into()));
            return;
        };
        let (project, service, host) =
            (project.to_owned(), service.to_owned(), hostname.get_untracked().trim().to_owned());
        spawn_local(async move {
            match admin::add_domain(&key.get_value(), &project, &service, &host).await {
                Ok(()) => {
                    error.try_set(None);
                    hostname.try_set(String::new());
                    on_added();
                }
                Err(e) => {
                    error.try_set(Some(e));
                }
            }
        });
    };
    view! {
        <form class="row new-domain" on:submit=add aria-label="Add a custom domain">
            <label for="domain-hostname">"Hostname"</label>
            <input id="domain-hostname" placeholder="api.example.com" prop:value=move || hostname.get()
                on:input=move |ev| hostname.set(event_target_value(&ev)) />
            <label for="domain-service">"Routes to"</label>
            <select id="domain-service" prop:value=move || service.get() on:change=move |ev| service.set(event_target_value(&ev))>
                {services.into_iter().map(|s| view! { <option value=s.clone()>{s.clone()}</option> }).collect_view()}
            </select>
            <button type="submit">"Add domain"</button>
            <span class="error" role="alert">{move || error.get()}</span>
        </form>
    }
}
