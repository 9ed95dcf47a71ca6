//! The models of the signed-in key's projects, live: the page reads them
//! once and again on every state change the server publishes, and shows
//! the actions a manage key may take (wake, sleep, edit scaling, read an
//! external engine's log).

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, ModelRow, Scaling, actions};
use crate::deploy::{DeployPanel, Deploying};
use crate::engine_log::EngineLog;
use crate::format;
use crate::live::{self, Link, ModelEvent};
use crate::remote;

/// Counts with no events of their own (requests in flight) are read again this often.
const REFRESH_MS: u64 = 15_000;

#[component]
pub fn Models(key: String, may_manage: bool) -> impl IntoView {
    let rows = RwSignal::new(None::<Result<Vec<ModelRow>, String>>);
    let link = RwSignal::new(Link::Connecting);
    let last_event = RwSignal::new(None::<ModelEvent>);
    let notice = RwSignal::new(None::<Result<String, String>>);
    let editing = RwSignal::new(None::<String>);
    let reading = RwSignal::new(None::<String>);
    let acting = RwSignal::new(None::<String>);
    let deploying = RwSignal::new(None::<Deploying>);
    // Answers may overtake each other: only the newest read is shown.
    let asked = StoredValue::new(0u64);
    let key = StoredValue::new(key);
    let reload = move || {
        asked.update_value(|n| *n += 1);
        let (k, mine) = (key.get_value(), asked.get_value());
        spawn_local(async move {
            let answer = api::models(&k).await;
            if asked.try_get_value() == Some(mine) {
                rows.try_set(Some(answer));
            }
        });
    };
    reload();
    live::subscribe(key.get_value(), link, move |event| {
        last_event.try_set(Some(event));
        reload();
    });
    let handle = set_interval_with_handle(reload, std::time::Duration::from_millis(REFRESH_MS));
    on_cleanup(move || {
        if let Ok(h) = handle {
            h.clear();
        }
    });

    let act = move |model: String, wake: bool| {
        acting.set(Some(model.clone()));
        notice.set(None);
        let k = key.get_value();
        spawn_local(async move {
            let result = if wake {
                actions::wake(&k, &model).await.map(|()| format!("{model} is serving."))
            } else {
                actions::sleep(&k, &model).await.map(|busy| match busy {
                    0 => format!("{model} is going to sleep."),
                    n => format!("{model}: {n} replica(s) busy with requests sleep once idle."),
                })
            };
            notice.try_set(Some(result));
            acting.try_set(None);
            reload();
        });
    };

    view! {
        <section class="card">
            <div class="title-row">
                <h1>"Models"</h1>
                <LiveBadge link />
                {may_manage.then(|| view! {
                    <button type="button" class="small" data-action="deploy"
                        aria-expanded=move || (deploying.get() == Some(Deploying::New)).to_string()
                        on:click=move |_| deploying.set(Some(Deploying::New))>"Deploy model"</button>
                })}
            </div>
            <p class="muted event-line" data-last-event>{move || last_event.get().map(|e| {
                format!("{} → {} ({}, after {})", e.model, e.to, e.cause, format::millis(e.after_ms))
            })}</p>
            {move || notice.get().map(|n| match n {
                Ok(m) => view! { <p class="notice" role="status">{m}</p> }.into_any(),
                Err(e) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
            })}
            {move || remote::show(rows.get(), Vec::is_empty, "No models yet.", |list| {
                view! { <ModelTable list may_manage acting editing reading deploying act /> }.into_any()
            })}
            {move || deploying.get().map(|mode| view! {
                <DeployPanel key=key.get_value() mode deploying on_applied=move |m: String| {
                    notice.set(Some(Ok(m)));
                    reload();
                } />
            })}
            {move || reading.get().map(|name| view! { <EngineLog key=key.get_value() model=name reading /> })}
            {move || editing.get().and_then(|name| {
                let Some(Ok(list)) = rows.get_untracked() else { return None };
                let scaling = list.into_iter().find(|m| m.name == name)?.scaling;
                Some(view! { <ScalingForm key=key.get_value() model=name scaling editing on_saved=move |m: String| {
                    notice.set(Some(Ok(format!("{m}: scaling saved."))));
                    reload();
                } /> })
            })}
        </section>
    }
}

/// Whether the page's events are arriving.
#[component]
fn LiveBadge(link: RwSignal<Link>) -> impl IntoView {
    view! {
        <span class="live" data-link=move || format!("{:?}", link.get()).to_lowercase()>
            {move || match link.get() {
                Link::Connecting => "Connecting…",
                Link::Live => "● Live",
                Link::Retrying => "Reconnecting…",
            }}
        </span>
    }
}

/// The models, a row each.
#[component]
fn ModelTable(
    list: Vec<ModelRow>,
    may_manage: bool,
    acting: RwSignal<Option<String>>,
    editing: RwSignal<Option<String>>,
    reading: RwSignal<Option<String>>,
    deploying: RwSignal<Option<Deploying>>,
    act: impl Fn(String, bool) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    view! {
        <div class="scroll">
        <table class="models">
            <thead><tr>
                <th>"Model"</th><th>"Kind"</th><th>"State"</th><th>"Tier"</th><th>"Device memory"</th><th>"Replicas"</th><th>"Last wake"</th>
                {may_manage.then(|| view! { <th>"Actions"</th> })}
            </tr></thead>
            <tbody>
                {list.into_iter().map(|m| view! { <ModelLine m may_manage acting editing reading deploying act /> }).collect_view()}
            </tbody>
        </table>
        </div>
    }
}

/// One model's row.
#[component]
fn ModelLine(
    m: ModelRow,
    may_manage: bool,
    acting: RwSignal<Option<String>>,
    editing: RwSignal<Option<String>>,
    reading: RwSignal<Option<String>>,
    deploying: RwSignal<Option<Deploying>>,
    act: impl Fn(String, bool) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let rt = m.runtime.clone().unwrap_or_default();
    let external = m.engine != "builtin";
    let state = if m.runtime.is_some() { rt.state.clone() } else { "unknown".to_owned() };
    let last_wake = match (rt.last_wake_ms, &rt.last_wake_from) {
        (Some(ms), Some(from)) => format!("{} from {from}", format::millis(ms)),
        (Some(ms), None) => format::millis(ms),
        _ => "—".to_owned(),
    };
    let name = StoredValue::new(m.name.clone());
    let project = StoredValue::new(m.project.clone());
    let edit = move || Deploying::Edit { model: name.get_value(), project: project.get_value() };
    let remove = move || Deploying::Remove { model: name.get_value(), project: project.get_value() };
    let busy = move || acting.get().is_some_and(|a| a == name.get_value());
    let (can_wake, can_sleep) = (
        matches!(state.as_str(), "staged" | "sleeping" | "absent" | "failed"),
        state == "serving" && m.scaling.min_replicas == 0,
    );
    view! {
        <tr data-model=m.name.clone()>
            <td><a href=crate::model_page::href(&m.name)>{m.name.clone()}</a></td>
            <td class="kind">{m.kind.unwrap_or("—")}</td>
            <td><span class=format!("state state-{state}") title=rt.failure.clone().unwrap_or_default()>{state.clone()}</span></td>
            <td>{rt.tier.clone().unwrap_or_else(|| "—".into())}</td>
            <td>{format::bytes(rt.device_bytes)}</td>
            <td>{rt.replicas}</td>
            <td>{last_wake}</td>
            {may_manage.then(|| view! {
                <td class="actions">
                    <button type="button" class="small" data-action="wake" disabled=move || busy() || !can_wake
                        on:click=move |_| act(name.get_value(), true)>
                        {move || if busy() { "Working…" } else { "Wake" }}
                    </button>
                    <button type="button" class="small secondary" data-action="sleep" disabled=move || busy() || !can_sleep
                        title=(m.scaling.min_replicas > 0).then_some("minReplicas keeps it awake")
                        on:click=move |_| act(name.get_value(), false)>"Sleep"</button>
                    <button type="button" class="small secondary" data-action="scaling"
                        aria-expanded=move || (editing.get().as_deref() == Some(name.get_value().as_str())).to_string()
                        on:click=move |_| editing.update(|e| {
                            *e = if e.as_deref() == Some(name.get_value().as_str()) { None } else { Some(name.get_value()) };
                        })>"Scaling"</button>
                    <button type="button" class="small secondary" data-action="edit"
                        aria-expanded=move || (deploying.get() == Some(edit())).to_string()
                        on:click=move |_| deploying.set(Some(edit()))>"Edit"</button>
                    <button type="button" class="small danger" data-action="remove"
                        aria-expanded=move || (deploying.get() == Some(remove())).to_string()
                        on:click=move |_| deploying.set(Some(remove()))>"Remove"</button>
                    {external.then(|| view! {
                        <button type="button" class="small secondary" data-action="log"
                            aria-expanded=move || (reading.get().as_deref() == Some(name.get_value().as_str())).to_string()
                            on:click=move |_| reading.update(|r| {
                                *r = if r.as_deref() == Some(name.get_value().as_str()) { None } else { Some(name.get_value()) };
                            })>"Engine log"</button>
                    })}
                </td>
            })}
        </tr>
    }
}

/// The scaling of one model, edited in place.
#[component]
fn ScalingForm(
    key: String,
    model: String,
    scaling: Scaling,
    editing: RwSignal<Option<String>>,
    on_saved: impl Fn(String) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let min = RwSignal::new(scaling.min_replicas.to_string());
    let max = RwSignal::new(scaling.max_replicas.to_string());
    let idle = RwSignal::new(scaling.idle_timeout.clone());
    let warm = RwSignal::new(scaling.warm_tier.clone());
    let never = RwSignal::new(scaling.never_preempt);
    let error = RwSignal::new(None::<String>);
    let saving = RwSignal::new(false);
    let (key, model) = (StoredValue::new(key), StoredValue::new(model));
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (Ok(min_replicas), Ok(max_replicas)) =
            (min.get_untracked().trim().parse::<u32>(), max.get_untracked().trim().parse::<u32>())
        else {
            error.set(Some("Replicas are whole numbers.".into()));
            return;
        };
        let wanted = Scaling {
            min_replicas,
            max_replicas,
            idle_timeout: idle.get_untracked().trim().to_owned(),
            warm_tier: warm.get_untracked(),
            never_preempt: never.get_untracked(),
        };
        saving.set(true);
        spawn_local(async move {
            match actions::set_scaling(&key.get_value(), &model.get_value(), &wanted).await {
                Ok(()) => {
                    editing.try_set(None);
                    on_saved(model.get_value());
                }
                Err(e) => {
                    error.try_set(Some(e));
                }
            }
            saving.try_set(false);
        });
    };
    view! {
        <form class="scaling" on:submit=save aria-label=format!("Scaling of {}", model.get_value())>
            <h2>{format!("Scaling of {}", model.get_value())}</h2>
            <div class="fields">
                <label>"Min replicas"<input name="minReplicas" type="number" min="0" prop:value=move || min.get() on:input=move |ev| min.set(event_target_value(&ev)) /></label>
                <label>"Max replicas"<input name="maxReplicas" type="number" min="1" prop:value=move || max.get() on:input=move |ev| max.set(event_target_value(&ev)) /></label>
                <label>"Idle timeout"<input name="idleTimeout" placeholder="5m" prop:value=move || idle.get() on:input=move |ev| idle.set(event_target_value(&ev)) /></label>
                <label>"Warm tier"
                    <select name="warmTier" prop:value=move || warm.get() on:change=move |ev| warm.set(event_target_value(&ev))>
                        <option value="ram">"ram"</option><option value="disk">"disk"</option><option value="object">"object"</option>
                    </select>
                </label>
                <label class="check"><input name="neverPreempt" type="checkbox" prop:checked=move || never.get() on:change=move |ev| never.set(event_target_checked(&ev)) />"Never preempt"</label>
            </div>
            <p class="error" role="alert">{move || error.get()}</p>
            <div class="row">
                <button type="submit" disabled=move || saving.get()>{move || if saving.get() { "Saving…" } else { "Save" }}</button>
                <button type="button" class="secondary" on:click=move |_| editing.set(None)>"Cancel"</button>
            </div>
        </form>
    }
}
