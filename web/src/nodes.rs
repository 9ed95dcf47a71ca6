//! The scheduler's nodes: each one's device budget and use, and its RAM
//! and disk tiers where sleeping models wait (admin keys only).

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::admin::{self, NodeRow};
use crate::{format, remote};

const REFRESH_MS: u64 = 5_000;

/// One budget as a bar: used against budget.
fn meter(label: String, used: u64, budget: u64) -> impl IntoView {
    let share = format::percent(used, budget);
    let (name, aria) = (label.clone(), label.clone());
    view! {
        <div class="meter" data-tier=name>
            <div class="meter-label"><span>{label}</span><span class="muted">{format!("{} of {}", format::bytes(used), format::bytes(budget))}</span></div>
            <div class="meter-track" role="meter" aria-label=aria aria-valuemin="0" aria-valuemax="100" aria-valuenow=format!("{share:.0}")>
                <div class="meter-fill" style=format!("width:{share:.1}%")></div>
            </div>
        </div>
    }
}

#[component]
pub fn Nodes(key: String) -> impl IntoView {
    let nodes = RwSignal::new(None::<Result<Vec<NodeRow>, String>>);
    let key = StoredValue::new(key);
    let reload = move || {
        let k = key.get_value();
        spawn_local(async move {
            nodes.try_set(Some(admin::nodes(&k).await));
        });
    };
    reload();
    let handle = set_interval_with_handle(reload, std::time::Duration::from_millis(REFRESH_MS));
    on_cleanup(move || {
        if let Ok(h) = handle {
            h.clear();
        }
    });
    view! {
        <section class="card">
            <h1>"Nodes"</h1>
            {move || remote::show(nodes.get(), Vec::is_empty, "No nodes have joined.", |list| list.into_iter().map(|n| view! {
                <article class="node" data-node=n.id.clone()>
                    <h2>{n.id.clone()}</h2>
                    {meter("device".into(), n.device_used_bytes, n.device_budget_bytes)}
                    {n.tiers.into_iter().map(|t| meter(t.tier, t.used_bytes, t.budget_bytes)).collect_view()}
                </article>
            }).collect_view().into_any())}
        </section>
    }
}
