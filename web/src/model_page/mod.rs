//! One model's page (`#/models/<name>`): what an operator looks for — its
//! state over the last hour (wakes, sleeps and preemptions with their cause
//! and how long the state before lasted), where its replicas are, its
//! request and token rates and time to first token, and for an external
//! engine its log. It follows the model's events live.

pub mod timeline;

use leptos::prelude::*;
use leptos::task::spawn_local;

use self::timeline::{Segment, Step, Timeline, segments};
use crate::api::model_page::{self, ChangeRow, FirstToken, ModelDetail, PlacementRow};
use crate::api::{self, UsagePoint};
use crate::chart::{Chart, Datum, Kind};
use crate::engine_log::EngineLog;
use crate::live::{self, Link};
use crate::usage::{LAST_HOUR, Window};
use crate::{format, remote};

const REFRESH_MS: u64 = 15_000;
/// The rates are over the last this many minutes.
const RATE_MINUTES: usize = 15;

/// The URL fragment of a model's page.
pub fn href(model: &str) -> String {
    format!("#/models/{}", String::from(js_sys::encode_uri_component(model)))
}

/// The model a fragment names (`#/models/<name>`), if any.
pub fn model_of(hash: &str) -> Option<String> {
    let rest = hash.trim_start_matches('#').trim_start_matches('/').strip_prefix("models/")?;
    let name = js_sys::decode_uri_component(rest).ok().map(String::from)?;
    (!name.is_empty()).then_some(name)
}

/// Requests a minute and output tokens a second over the last `minutes` of `points` (one model, by minute).
pub fn rates(points: &[UsagePoint], window: Window, first: f64, minutes: usize) -> (f64, f64) {
    let recent = |p: &&UsagePoint| {
        window.bucket_of(js_sys::Date::parse(&p.start), first).is_some_and(|b| b + minutes >= window.buckets)
    };
    let (requests, tokens) =
        points.iter().filter(recent).fold((0u64, 0u64), |(r, t), p| (r + p.requests, t + p.output_tokens));
    (requests as f64 / minutes as f64, tokens as f64 / (minutes as f64 * 60.0))
}

#[component]
pub fn ModelPage(key: String, name: String, may_manage: bool) -> impl IntoView {
    let key = StoredValue::new(key);
    let name = StoredValue::new(name);
    let detail = RwSignal::new(None::<Result<ModelDetail, String>>);
    let usage = RwSignal::new(Vec::<UsagePoint>::new());
    let link = RwSignal::new(Link::Connecting);
    let now = RwSignal::new(js_sys::Date::now());
    // Answers may overtake each other: only the newest read is shown.
    let asked = StoredValue::new(0u64);
    let reload = move || {
        asked.update_value(|n| *n += 1);
        let (k, n, mine) = (key.get_value(), name.get_value(), asked.get_value());
        spawn_local(async move {
            let d = model_page::detail(&k, &n).await;
            let first = LAST_HOUR.first(js_sys::Date::now());
            let since: String = js_sys::Date::new(&(first * LAST_HOUR.bucket_ms).into()).to_iso_string().into();
            let points = api::usage(&k, &since, "MODEL", LAST_HOUR.bucket).await.unwrap_or_default();
            if asked.try_get_value() != Some(mine) {
                return;
            }
            batch(|| {
                usage.try_set(points.into_iter().filter(|p| p.model.as_deref() == Some(n.as_str())).collect());
                now.try_set(js_sys::Date::now());
                detail.try_set(Some(d));
            });
        });
    };
    reload();
    live::subscribe(key.get_value(), link, move |event| {
        // A wake's progress ticks (from and to both `waking`) change nothing the page shows.
        if event.model == name.get_value() && event.from != event.to {
            reload();
        }
    });
    // The engine log is read once it is known the engine is external, and stays open across reloads.
    let external = Memo::new(move |_| match detail.get() {
        Some(Ok(d)) => d.engine != "builtin",
        _ => false,
    });
    let reading = RwSignal::new(Some(name.get_value()));
    let handle = set_interval_with_handle(reload, std::time::Duration::from_millis(REFRESH_MS));
    on_cleanup(move || {
        if let Ok(h) = handle {
            h.clear();
        }
    });
    view! {
        <section class="card model-page">
            <div class="title-row">
                <h1>{move || name.get_value()}</h1>
                <a href="#/models">"← All models"</a>
            </div>
            {move || remote::show(detail.get(), |_| false, "", move |d| {
                view! { <Detail d usage=usage.get() now=now.get() /> }.into_any()
            })}
            {move || (may_manage && external.get() && reading.get().is_some()).then(|| view! {
                <EngineLog key=key.get_value() model=name.get_value() reading />
            })}
        </section>
    }
}

#[component]
fn Detail(d: ModelDetail, usage: Vec<UsagePoint>, now: f64) -> impl IntoView {
    let start = now - 3_600_000.0;
    let steps: Vec<Step<'_>> = d
        .changes
        .iter()
        .map(|c| Step {
            at_ms: js_sys::Date::parse(&c.at),
            node: c.node.as_str(),
            from: c.from.as_str(),
            to: c.to.as_str(),
        })
        .collect();
    let band: Vec<Segment> = segments(&steps, d.state.as_deref(), start, now);
    let first = LAST_HOUR.first(now);
    let (per_minute, tokens_per_second) = rates(&usage, LAST_HOUR, first, RATE_MINUTES);
    let chart = |value: fn(&UsagePoint) -> f64| -> Vec<Datum> {
        usage
            .iter()
            .filter_map(|p| {
                let bucket = LAST_HOUR.bucket_of(js_sys::Date::parse(&p.start), first)?;
                Some(Datum { bucket, series: d.name.clone(), value: value(p) })
            })
            .collect()
    };
    let (requests, tokens) = (chart(|p| p.requests as f64), chart(|p| p.output_tokens as f64));
    let state = d.state.clone().unwrap_or_else(|| "unknown".into());
    view! {
        <p class="summary">
            <span class=format!("state state-{state}") data-model-state title=d.failure.clone().unwrap_or_default()>{state.clone()}</span>
            {format!(" · {} engine · project {} · {}–{} replicas · sleeps after {} idle · warm in {}{}",
                d.engine, d.project, d.scaling.min_replicas, d.scaling.max_replicas, d.scaling.idle_timeout,
                d.scaling.warm_tier, if d.scaling.never_preempt { " · never preempted" } else { "" })}
        </p>
        <h2>"State, last hour"</h2>
        <Timeline segments=band start_ms=start now_ms=now />
        <h2>"Traffic"</h2>
        <Stats per_minute tokens_per_second first_token=d.first_token />
        <div class="charts">
            <Chart title="Requests per minute" unit="requests" data=requests buckets=LAST_HOUR.buckets kind=Kind::Stacked since=LAST_HOUR.label start_ms=first * LAST_HOUR.bucket_ms bucket_ms=LAST_HOUR.bucket_ms />
            <Chart title="Output tokens per minute" unit="tokens" data=tokens buckets=LAST_HOUR.buckets kind=Kind::Stacked since=LAST_HOUR.label start_ms=first * LAST_HOUR.bucket_ms bucket_ms=LAST_HOUR.bucket_ms />
        </div>
        <h2>"Replicas"</h2>
        <Placements rows=d.placements />
        <h2>"Changes, last hour"</h2>
        <Changes rows=d.changes />
    }
}

/// A rate with two significant digits below 10.
fn rate(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[component]
fn Stats(per_minute: f64, tokens_per_second: f64, first_token: FirstToken) -> impl IntoView {
    let ms = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), format::millis);
    view! {
        <dl class="stats">
            <div><dt>{format!("Requests / min (last {RATE_MINUTES} min)")}</dt><dd data-stat="requests">{rate(per_minute)}</dd></div>
            <div><dt>"Output tokens / s"</dt><dd data-stat="tokens">{rate(tokens_per_second)}</dd></div>
            <div><dt>{format!("Time to first token ({} streamed)", first_token.count)}</dt>
                <dd data-stat="ttft">{format!("p50 {} · p95 {} · p99 {}", ms(first_token.p50_ms), ms(first_token.p95_ms), ms(first_token.p99_ms))}</dd></div>
        </dl>
    }
}

#[component]
fn Placements(rows: Vec<PlacementRow>) -> impl IntoView {
    if rows.is_empty() {
        return view! { <p class="muted">"No node holds it."</p> }.into_any();
    }
    view! {
        <div class="scroll"><table>
            <thead><tr><th>"Node"</th><th>"State"</th><th>"Tier"</th><th>"Device memory"</th><th>"In flight"</th><th>"Last wake"</th></tr></thead>
            <tbody>{rows.into_iter().map(|p| view! {
                <tr data-node=p.node.clone()>
                    <td>{p.node.clone()}</td>
                    <td><span class=format!("state state-{}", p.state)>{p.state.clone()}</span></td>
                    <td>{p.tier.clone().unwrap_or_else(|| "—".into())}</td>
                    <td>{format::bytes(p.device_bytes)}</td>
                    <td>{p.in_flight}</td>
                    <td>{p.last_wake_ms.map_or_else(|| "—".to_owned(), format::millis)}</td>
                </tr>
            }).collect_view()}</tbody>
        </table></div>
    }
    .into_any()
}

#[component]
fn Changes(rows: Vec<ChangeRow>) -> impl IntoView {
    if rows.is_empty() {
        return view! { <p class="muted">"No changes in the last hour (or since this server started)."</p> }.into_any();
    }
    view! {
        <div class="scroll"><table class="changes-table">
            <thead><tr><th>"When"</th><th>"Node"</th><th>"Change"</th><th>"Cause"</th><th>"After"</th></tr></thead>
            <tbody>{rows.into_iter().rev().map(|c| {
                let cause = match &c.preempted_by {
                    Some(by) => format!("{} (for {by})", c.cause),
                    None => c.cause.clone(),
                };
                view! {
                    <tr data-change-to=c.to.clone() data-cause=c.cause.clone()>
                        <td title=c.at.clone()>{format::ago_rfc3339(Some(&c.at))}</td>
                        <td>{c.node.clone()}</td>
                        <td>{format!("{} → {}", c.from, c.to)}</td>
                        <td>{cause}</td>
                        <td>{format::millis(c.after_ms)}</td>
                    </tr>
                }
            }).collect_view()}</tbody>
        </table></div>
    }
    .into_any()
}
