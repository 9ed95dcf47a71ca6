//! Usage dashboards: tokens and requests over time per model and per key,
//! wake counts and wake latency, and for the models counted otherwise
//! seconds of audio heard, characters spoken and documents ranked, as SVG
//! charts, with totals below.

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, UsagePoint};
use crate::chart::{Chart, Datum, Kind};
use crate::{format, remote};

/// A time window the page can show: its buckets and the GraphQL bucket size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// The left edge, in words.
    pub label: &'static str,
    pub buckets: usize,
    pub bucket_ms: f64,
    pub bucket: &'static str,
}

pub const LAST_HOUR: Window = Window { label: "60 min ago", buckets: 60, bucket_ms: 60_000.0, bucket: "MINUTE" };
pub const LAST_DAY: Window = Window { label: "24 h ago", buckets: 24, bucket_ms: 3_600_000.0, bucket: "HOUR" };

impl Window {
    /// The first bucket's index since the epoch, for a window ending in the bucket holding `now_ms`.
    pub fn first(&self, now_ms: f64) -> f64 {
        (now_ms / self.bucket_ms).floor() - (self.buckets as f64 - 1.0)
    }

    /// Which bucket (0 = oldest) the instant `at_ms` falls in, if inside the window.
    pub fn bucket_of(&self, at_ms: f64, first: f64) -> Option<usize> {
        let i = (at_ms / self.bucket_ms).floor() - first;
        (i.is_finite() && (0.0..self.buckets as f64).contains(&i)).then_some(i as usize)
    }
}

/// `value` of every point, by bucket and by the series `series` names.
pub fn series(
    points: &[UsagePoint],
    window: Window,
    first: f64,
    series: impl Fn(&UsagePoint) -> String,
    value: impl Fn(&UsagePoint) -> f64,
) -> Vec<Datum> {
    points
        .iter()
        .filter_map(|p| {
            let bucket = window.bucket_of(js_sys::Date::parse(&p.start), first)?;
            Some(Datum { bucket, series: series(p), value: value(p) })
        })
        .collect()
}

/// What a chart counts of each point.
type Measure = fn(&UsagePoint) -> f64;

fn tokens(p: &UsagePoint) -> f64 {
    (p.input_tokens + p.output_tokens) as f64
}

/// Both groupings of one window.
#[derive(Clone)]
struct Loaded {
    by_model: Vec<UsagePoint>,
    by_key: Vec<UsagePoint>,
    key_names: BTreeMap<String, String>,
}

async fn load(key: &str, window: Window) -> Result<Loaded, String> {
    let since: String =
        js_sys::Date::new(&(window.first(js_sys::Date::now()) * window.bucket_ms).into()).to_iso_string().into();
    let by_model = api::usage(key, &since, "MODEL", window.bucket).await?;
    let by_key = api::usage(key, &since, "KEY", window.bucket).await?;
    // Names for the keys; a key of another project shows by its id.
    let key_names = api::keys(key)
        .await
        .map(|listing| listing.rows.into_iter().map(|k| (k.id, format!("{} ({})", k.name, k.hint))).collect())
        .unwrap_or_default();
    Ok(Loaded { by_model, by_key, key_names })
}

#[component]
pub fn Usage(key: String) -> impl IntoView {
    let data = RwSignal::new(None::<Result<Loaded, String>>);
    let window = RwSignal::new(LAST_HOUR);
    let key = StoredValue::new(key);
    let reload = move || {
        data.set(None);
        let (k, w) = (key.get_value(), window.get_untracked());
        spawn_local(async move {
            data.try_set(Some(load(&k, w).await));
        });
    };
    reload();
    view! {
        <section class="card">
            <div class="title-row">
                <h1>"Usage"</h1>
                <label class="inline">"Window "
                    <select name="window" on:change=move |ev| {
                        window.set(if event_target_value(&ev) == "day" { LAST_DAY } else { LAST_HOUR });
                        reload();
                    }>
                        <option value="hour">"Last hour, per minute"</option>
                        <option value="day">"Last day, per hour"</option>
                    </select>
                </label>
            </div>
            {move || {
                let w = window.get();
                remote::show(data.get(), |d| d.by_model.is_empty(), "No requests in this window.", move |d: Loaded| {
                    let first = w.first(js_sys::Date::now());
                    let model = |p: &UsagePoint| p.model.clone().unwrap_or_else(|| "—".into());
                    let names = d.key_names.clone();
                    let key_name = move |p: &UsagePoint| match &p.key_id {
                        Some(id) => names.get(id).cloned().unwrap_or_else(|| id.chars().take(8).collect()),
                        None => "no key".into(),
                    };
                    let wake_mean = |p: &UsagePoint| if p.woken > 0 { p.total_wake_ms / p.woken as f64 } else { 0.0 };
                    let mut charts = vec![
                        ("Tokens by model", "tokens", series(&d.by_model, w, first, model, tokens), Kind::Stacked),
                        ("Requests by model", "requests", series(&d.by_model, w, first, model, |p| p.requests as f64), Kind::Stacked),
                        ("Tokens by key", "tokens", series(&d.by_key, w, first, key_name.clone(), tokens), Kind::Stacked),
                        ("Requests by key", "requests", series(&d.by_key, w, first, key_name, |p| p.requests as f64), Kind::Stacked),
                        ("Wakes by model", "wakes", series(&d.by_model, w, first, model, |p| p.woken as f64), Kind::Stacked),
                        ("Mean wake latency by model", "ms", series(&d.by_model, w, first, model, wake_mean), Kind::Points),
                    ];
                    // The other units' charts, where the window holds any.
                    let units: [(&'static str, &'static str, Measure); 3] = [
                        ("Audio heard by model", "seconds", |p| p.audio_seconds),
                        ("Characters spoken by model", "characters", |p| p.characters as f64),
                        ("Documents ranked by model", "documents", |p| p.documents as f64),
                    ];
                    for (title, unit, value) in units {
                        if d.by_model.iter().any(|p| value(p) > 0.0) {
                            charts.push((title, unit, series(&d.by_model, w, first, model, value), Kind::Stacked));
                        }
                    }
                    let mut totals: BTreeMap<String, (u64, u64, u64, f64)> = BTreeMap::new();
                    for p in &d.by_model {
                        let t = totals.entry(model(p)).or_default();
                        t.0 += p.requests;
                        t.1 += p.input_tokens + p.output_tokens;
                        t.2 += p.woken;
                        t.3 += p.total_wake_ms;
                    }
                    view! {
                        <div class="charts">
                            {charts.into_iter().map(|(title, unit, data, kind)| view! {
                                <Chart title unit data buckets=w.buckets kind since=w.label start_ms=first * w.bucket_ms bucket_ms=w.bucket_ms />
                            }).collect_view()}
                        </div>
                        <div class="scroll">
                        <table>
                            <thead><tr><th>"Model"</th><th>"Requests"</th><th>"Tokens"</th><th>"Wakes"</th><th>"Mean wake"</th></tr></thead>
                            <tbody>
                                {totals.into_iter().map(|(model, (requests, tokens, woken, wake_ms))| view! {
                                    <tr data-usage=model.clone()>
                                        <td>{model.clone()}</td><td>{requests}</td><td>{tokens}</td><td>{woken}</td>
                                        <td>{if woken > 0 { format::millis(wake_ms / woken as f64) } else { "—".into() }}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                        </div>
                    }.into_any()
                })
            }}
        </section>
    }
}
