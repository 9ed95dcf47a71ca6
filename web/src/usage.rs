//! Usage over the last hour: tokens per minute as an SVG bar chart, stacked
//! by model, and per-model totals with wake counts and wake time.

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, UsagePoint};

/// Minutes shown.
const WINDOW: usize = 60;
const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 160.0;
/// Bar colours, by model in name order.
const COLOURS: &[&str] = &["#1f7a4d", "#3b6fd8", "#c26a12", "#8a3ea8", "#b42318", "#4b5563"];

/// One bar segment: a model's tokens in one minute.
#[derive(Debug, Clone, PartialEq)]
struct Segment {
    x: f64,
    y: f64,
    height: f64,
    model: String,
    tokens: u64,
    colour: &'static str,
}

/// Minute index (0 = oldest) of an RFC 3339 bucket start, given the window's first minute.
fn minute_of(start: &str, first_minute: f64) -> Option<usize> {
    let ms = js_sys::Date::parse(start);
    let minute = (ms / 60_000.0).floor() - first_minute;
    (minute.is_finite() && (0.0..WINDOW as f64).contains(&minute)).then_some(minute as usize)
}

/// Stacked segments for `points`, scaled to the busiest minute.
fn segments(points: &[UsagePoint], first_minute: f64) -> Vec<Segment> {
    let models: Vec<String> =
        points.iter().filter_map(|p| p.model.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let mut per_minute: Vec<Vec<(String, u64)>> = vec![Vec::new(); WINDOW];
    for p in points {
        if let (Some(m), Some(i)) = (&p.model, minute_of(&p.start, first_minute)) {
            per_minute[i].push((m.clone(), p.input_tokens + p.output_tokens));
        }
    }
    let busiest = per_minute.iter().map(|m| m.iter().map(|(_, t)| t).sum::<u64>()).max().unwrap_or(0).max(1);
    let slot = WIDTH / WINDOW as f64;
    let mut out = Vec::new();
    for (i, minute) in per_minute.into_iter().enumerate() {
        let mut top = HEIGHT;
        for (model, tokens) in minute {
            let height = HEIGHT * tokens as f64 / busiest as f64;
            top -= height;
            let colour = COLOURS[models.iter().position(|m| *m == model).unwrap_or(0) % COLOURS.len()];
            out.push(Segment { x: i as f64 * slot + 1.0, y: top, height, model, tokens, colour });
        }
    }
    out
}

#[component]
pub fn Usage(key: String) -> impl IntoView {
    let data = RwSignal::new(None::<Result<Vec<UsagePoint>, String>>);
    let now = js_sys::Date::now();
    let first_minute = (now / 60_000.0).floor() - (WINDOW as f64 - 1.0);
    let since: String = js_sys::Date::new(&(first_minute * 60_000.0).into()).to_iso_string().into();
    spawn_local(async move { data.set(Some(api::usage(&key, &since).await)) });
    view! {
        <section class="card">
            <h1>"Usage, last hour"</h1>
            {move || match data.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
                Some(Ok(points)) if points.is_empty() => view! { <p class="muted">"No requests in the last hour."</p> }.into_any(),
                Some(Ok(points)) => {
                    let bars = segments(&points, first_minute);
                    let mut totals: BTreeMap<String, (u64, u64, u64, f64)> = BTreeMap::new();
                    for p in &points {
                        let t = totals.entry(p.model.clone().unwrap_or_default()).or_default();
                        t.0 += p.requests;
                        t.1 += p.input_tokens + p.output_tokens;
                        t.2 += p.woken;
                        t.3 += p.total_wake_ms;
                    }
                    view! {
                        <svg class="chart" viewBox=format!("0 0 {WIDTH} {HEIGHT}") role="img" aria-label="Tokens per minute, by model">
                            <line x1="0" y1=HEIGHT x2=WIDTH y2=HEIGHT stroke="#d9dee4" />
                            {bars.into_iter().map(|s| view! {
                                <rect x=s.x y=s.y width=WIDTH / WINDOW as f64 - 2.0 height=s.height fill=s.colour data-model=s.model.clone()>
                                    <title>{format!("{}: {} tokens", s.model, s.tokens)}</title>
                                </rect>
                            }).collect_view()}
                        </svg>
                        <table>
                            <thead><tr><th>"Model"</th><th>"Requests"</th><th>"Tokens"</th><th>"Wakes"</th><th>"Mean wake"</th></tr></thead>
                            <tbody>
                                {totals.into_iter().map(|(model, (requests, tokens, woken, wake_ms))| {
                                    let label = model.clone();
                                    view! {
                                    <tr data-usage=model>
                                        <td>{label}</td><td>{requests}</td><td>{tokens}</td><td>{woken}</td>
                                        <td>{if woken > 0 { format!("{:.0} ms", wake_ms / woken as f64) } else { "—".into() }}</td>
                                    </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any()
                }
            }}
        </section>
    }
}
