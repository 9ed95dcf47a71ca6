//! The last lines an external engine wrote (its log tail), for the models
//! page and a model's own page.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::{api, remote};

/// The last lines an external engine wrote, read when opened and on request.
#[component]
pub fn EngineLog(key: String, model: String, reading: RwSignal<Option<String>>) -> impl IntoView {
    let lines = RwSignal::new(None::<Result<Vec<String>, String>>);
    let (key, model) = (StoredValue::new(key), StoredValue::new(model));
    let load = move || {
        let (k, m) = (key.get_value(), model.get_value());
        spawn_local(async move {
            lines.try_set(Some(api::model_logs(&k, &m).await));
        });
    };
    load();
    view! {
        <section class="engine-log" aria-label=move || format!("Engine log of {}", model.get_value())>
            <div class="title-row">
                <h2>{move || format!("Engine log: {}", model.get_value())}</h2>
                <button type="button" class="small secondary" on:click=move |_| load()>"Refresh"</button>
                <button type="button" class="small secondary" on:click=move |_| reading.set(None)>"Close"</button>
            </div>
            {move || remote::show(lines.get(), Vec::is_empty, "The engine has written nothing yet.", |lines| {
                view! { <pre class="log">{lines.join("\n")}</pre> }.into_any()
            })}
        </section>
    }
}
