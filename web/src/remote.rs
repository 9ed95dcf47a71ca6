//! What a page shows while its data loads, when loading failed, and when
//! there is nothing to show: one look on every page.

use leptos::prelude::*;

/// Data a page asked the server for: `None` while the answer is on its way.
pub type Remote<T> = Option<Result<T, String>>;

/// The loading line, the error, the empty line, or `ok`'s view of the data.
pub fn show<T>(
    state: Remote<T>,
    is_empty: impl FnOnce(&T) -> bool,
    empty: &'static str,
    ok: impl FnOnce(T) -> AnyView,
) -> AnyView {
    match state {
        None => view! { <p class="muted loading" aria-busy="true">"Loading…"</p> }.into_any(),
        Some(Err(e)) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
        Some(Ok(data)) if is_empty(&data) => view! { <p class="muted">{empty}</p> }.into_any(),
        Some(Ok(data)) => ok(data),
    }
}
