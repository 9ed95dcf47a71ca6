//! The audit log: who changed what, when and through which door, newest
//! first, filtered by action, kind of object and time.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::admin::{self, AuditFilter, AuditRow};
use crate::format;

/// Actions the filter suggests; any other text filters too.
const ACTIONS: &[&str] = &[
    "project.create",
    "project.update",
    "project.delete",
    "service.create",
    "service.update",
    "service.delete",
    "model.create",
    "model.update",
    "model.delete",
    "model.wake",
    "model.sleep",
    "api_key.create",
    "api_key.revoke",
    "domain.create",
    "domain.verify",
    "domain.delete",
];
const OBJECT_TYPES: &[&str] = &["project", "service", "model", "api_key", "domain"];
/// (label, hours back; 0 = all time)
const WINDOWS: &[(&str, f64)] = &[("Last hour", 1.0), ("Last day", 24.0), ("Last week", 168.0), ("All time", 0.0)];

fn since(hours: f64) -> String {
    if hours <= 0.0 {
        return String::new();
    }
    js_sys::Date::new(&(js_sys::Date::now() - hours * 3_600_000.0).into()).to_iso_string().into()
}

#[component]
pub fn Audit(key: String) -> impl IntoView {
    let rows = RwSignal::new(Vec::<AuditRow>::new());
    let next = RwSignal::new(None::<String>);
    let loading = RwSignal::new(true);
    let error = RwSignal::new(None::<String>);
    let action = RwSignal::new(String::new());
    let object_type = RwSignal::new(String::new());
    let window = RwSignal::new("168".to_owned());
    let key = StoredValue::new(key);
    let filter = move || AuditFilter {
        action: action.get_untracked(),
        object_type: object_type.get_untracked(),
        since: since(window.get_untracked().parse().unwrap_or(0.0)),
    };
    // `after`: the page after this cursor, appended; `None`: the first page, replacing.
    let load = move |after: Option<String>| {
        loading.set(true);
        let (k, f) = (key.get_value(), filter());
        spawn_local(async move {
            match admin::audit(&k, &f, after.clone()).await {
                Ok((page, cursor)) => {
                    if after.is_some() {
                        rows.try_update(|r| r.extend(page));
                    } else {
                        rows.try_set(page);
                    }
                    next.try_set(cursor);
                    error.try_set(None);
                }
                Err(e) => {
                    error.try_set(Some(e));
                }
            }
            loading.try_set(false);
        });
    };
    load(None);
    let apply = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        load(None);
    };
    view! {
        <section class="card">
            <h1>"Audit log"</h1>
            <form class="filters" on:submit=apply aria-label="Filter the audit log">
                <Filters action object_type window />
                <button type="submit">"Filter"</button>
            </form>
            <p class="error" role="alert">{move || error.get()}</p>
            <div class="scroll">
            <table class="audit">
                <thead><tr><th>"When"</th><th>"Actor"</th><th>"Action"</th><th>"Object"</th><th>"Via"</th><th>"Change"</th></tr></thead>
                <tbody>
                    {move || rows.get().into_iter().map(|e| view! { <EventLine e /> }).collect_view()}
                </tbody>
            </table>
            </div>
            {move || (loading.get()).then(|| view! { <p class="muted loading" aria-busy="true">"Loading…"</p> })}
            {move || (!loading.get() && rows.get().is_empty() && error.get().is_none()).then(|| view! { <p class="muted">"No events match."</p> })}
            {move || next.get().map(|cursor| view! {
                <button type="button" class="secondary" disabled=move || loading.get() on:click=move |_| load(Some(cursor.clone()))>"Load more"</button>
            })}
        </section>
    }
}

/// What the log is filtered by: action, object type, time window.
#[component]
fn Filters(action: RwSignal<String>, object_type: RwSignal<String>, window: RwSignal<String>) -> impl IntoView {
    view! {
        <label>"Action"
            <input name="action" list="audit-actions" placeholder="any" prop:value=move || action.get()
                on:input=move |ev| action.set(event_target_value(&ev)) />
        </label>
        <datalist id="audit-actions">{ACTIONS.iter().map(|a| view! { <option value=*a></option> }).collect_view()}</datalist>
        <label>"Object"
            <select name="objectType" prop:value=move || object_type.get() on:change=move |ev| object_type.set(event_target_value(&ev))>
                <option value="">"any"</option>
                {OBJECT_TYPES.iter().map(|t| view! { <option value=*t>{*t}</option> }).collect_view()}
            </select>
        </label>
        <label>"When"
            <select name="window" prop:value=move || window.get() on:change=move |ev| window.set(event_target_value(&ev))>
                {WINDOWS.iter().map(|(label, hours)| view! { <option value=hours.to_string()>{*label}</option> }).collect_view()}
            </select>
        </label>
    }
}

/// One event's row, its change folded away.
#[component]
fn EventLine(e: AuditRow) -> impl IntoView {
    view! {
        <tr data-action=e.action.clone()>
            <td title=e.at.clone()>{format::ago_rfc3339(Some(&e.at))}</td>
            <td>{e.actor.clone()}</td>
            <td><code>{e.action.clone()}</code></td>
            <td>{format!("{} {}", e.object_type, e.object_name.clone().unwrap_or_default())}</td>
            <td>{e.via.clone()}</td>
            <td><details><summary>"Show"</summary>
                <pre class="json">{diff(&e)}</pre>
            </details></td>
        </tr>
    }
}

/// The event's before and after, pretty-printed.
fn diff(e: &AuditRow) -> String {
    let show = |v: &Option<serde_json::Value>| {
        v.as_ref().map_or("—".to_owned(), |v| serde_json::to_string_pretty(v).unwrap_or_default())
    };
    format!("before: {}\nafter: {}", show(&e.before), show(&e.after))
}
