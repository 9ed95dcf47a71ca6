//! The models of the signed-in key's projects and their state, refreshed
//! every two seconds.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, ModelRow};

/// How often the page asks again.
const REFRESH_MS: u32 = 2_000;

fn bytes(n: u64) -> String {
    match n {
        0 => "0".into(),
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n => format!("{:.1} KiB", n as f64 / 1024.0),
    }
}

#[component]
pub fn Models(key: String) -> impl IntoView {
    let rows = RwSignal::new(None::<Result<Vec<ModelRow>, String>>);
    let load = move |key: String| {
        spawn_local(async move {
            rows.set(Some(api::models(&key).await));
        });
    };
    load(key.clone());
    let handle =
        set_interval_with_handle(move || load(key.clone()), std::time::Duration::from_millis(u64::from(REFRESH_MS)));
    on_cleanup(move || {
        if let Ok(h) = handle {
            h.clear();
        }
    });
    view! {
        <section class="card">
            <h1>"Models"</h1>
            {move || match rows.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
                Some(Ok(list)) if list.is_empty() => view! { <p class="muted">"No models yet."</p> }.into_any(),
                Some(Ok(list)) => view! {
                    <table>
                        <thead><tr><th>"Model"</th><th>"State"</th><th>"Tier"</th><th>"Device memory"</th><th>"Replicas"</th></tr></thead>
                        <tbody>
                            {list.into_iter().map(|m| {
                                let rt = m.runtime.clone();
                                let state = rt.as_ref().map_or("unknown".to_owned(), |r| r.state.clone());
                                view! {
                                    <tr data-model=m.name.clone()>
                                        <td>{m.name.clone()}</td>
                                        <td><span class=format!("state state-{state}")>{state.clone()}</span></td>
                                        <td>{rt.as_ref().and_then(|r| r.tier.clone()).unwrap_or_default()}</td>
                                        <td>{rt.as_ref().map(|r| bytes(r.device_bytes)).unwrap_or_default()}</td>
                                        <td>{rt.as_ref().map(|r| r.replicas).unwrap_or_default()}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            }}
        </section>
    }
}
