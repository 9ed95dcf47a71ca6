//! A plan shown as a diff before anything is written: a line per object
//! created (+), updated (~) or deleted (−), with each field's before and after.

use leptos::prelude::*;

use super::document::show_value;
use crate::api::deploy::{ChangeRow, Plan};

/// "Plan: 1 to create, 0 to update, 0 to delete." as the GitOps CLI says it.
pub fn summary(plan: &Plan) -> String {
    let n = |action: &str| plan.changes.iter().filter(|c| c.action == action).count();
    format!("Plan: {} to create, {} to update, {} to delete.", n("CREATE"), n("UPDATE"), n("DELETE"))
}

fn sign(action: &str) -> &'static str {
    match action {
        "CREATE" => "+",
        "DELETE" => "−",
        _ => "~",
    }
}

#[component]
pub fn PlanView(plan: Plan) -> impl IntoView {
    let title = summary(&plan);
    view! {
        <section class="plan" aria-label="Plan">
            <h3 data-plan-summary>{title}</h3>
            <ul class="changes">
                {plan.changes.into_iter().map(|c| view! { <ChangeLine c /> }).collect_view()}
            </ul>
        </section>
    }
}

#[component]
fn ChangeLine(c: ChangeRow) -> impl IntoView {
    let action = c.action.to_lowercase();
    view! {
        <li data-change=c.address.clone() data-action=action.clone() class=format!("change change-{action}")>
            <span class="sign" aria-hidden="true">{sign(&c.action)}</span>
            " "<code>{c.address.clone()}</code>" "<span class="muted">{action.clone()}</span>
            {c.destructive.then(|| view! { " "<strong class="danger">"destructive"</strong> })}
            <table class="diff">
                <thead class="sr-only"><tr><th scope="col">"Field"</th><th scope="col">"Before"</th><th scope="col">"After"</th></tr></thead>
                <tbody>
                    {c.fields.into_iter().map(|f| view! {
                        <tr data-field=f.field.clone()>
                            <th scope="row">{f.field.clone()}</th>
                            <td class="before">{show_value(f.before.as_ref())}</td>
                            <td class="after">{show_value(f.after.as_ref())}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </li>
    }
}
