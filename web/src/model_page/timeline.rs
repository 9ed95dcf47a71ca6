//! A model's state over the last hour as one band: a stretch per state,
//! from the state changes the server recorded.

use leptos::prelude::*;

use crate::format;

/// A stretch of time in one state.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub state: String,
    pub start_ms: f64,
    pub end_ms: f64,
}

/// One recorded change of one replica: when, on which node, from which state, to which.
#[derive(Debug, Clone, PartialEq)]
pub struct Step<'a> {
    pub at_ms: f64,
    pub node: &'a str,
    pub from: &'a str,
    pub to: &'a str,
}

/// How much a replica in `state` says about the model: a model is serving
/// when any replica serves, waking when one wakes, and so on down.
fn rank(state: &str) -> u8 {
    match state {
        "serving" => 7,
        "draining" => 6,
        "waking" => 5,
        "sleeping" => 4,
        "staged" => 3,
        "fetching" => 2,
        "failed" => 1,
        _ => 0,
    }
}

/// The model's state from its replicas': the best of them (`absent` for none).
fn model_state<'a>(replicas: &std::collections::BTreeMap<&'a str, &'a str>) -> String {
    replicas.values().copied().max_by_key(|s| rank(s)).unwrap_or("absent").to_owned()
}

/// The model's states over `[start_ms, now_ms]`, from its replicas' changes:
/// before a replica's first change it was in that change's `from` (the model
/// in `current` when nothing changed), and at each change the model is in
/// the best state of its replicas. Changes before the window count from its
/// start; later ones (a clock ahead of this one) count as now. `absent`
/// (before the server had the model) is left out: a gap.
pub fn segments(steps: &[Step<'_>], current: Option<&str>, start_ms: f64, now_ms: f64) -> Vec<Segment> {
    let mut steps: Vec<&Step<'_>> = steps.iter().collect();
    steps.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
    let mut replicas = std::collections::BTreeMap::new();
    for step in &steps {
        replicas.entry(step.node).or_insert(step.from);
    }
    let mut state = match (replicas.is_empty(), current) {
        (true, Some(c)) => c.to_owned(),
        (true, None) => return Vec::new(),
        (false, _) => model_state(&replicas),
    };
    let mut out: Vec<Segment> = Vec::new();
    let mut since = start_ms;
    for step in steps {
        let at = step.at_ms.clamp(start_ms, now_ms);
        if at > since {
            out.push(Segment { state: state.clone(), start_ms: since, end_ms: at });
            since = at;
        }
        replicas.insert(step.node, step.to);
        state = model_state(&replicas);
    }
    if now_ms > since {
        out.push(Segment { state, start_ms: since, end_ms: now_ms });
    }
    // Neighbours in the same state are one stretch; then the unknown goes.
    out.dedup_by(|later, earlier| {
        let same = later.state == earlier.state;
        if same {
            earlier.end_ms = later.end_ms;
        }
        same
    });
    out.retain(|s| s.state != "absent");
    out
}

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 28.0;

fn clock(ms: f64) -> String {
    let d = js_sys::Date::new(&ms.into());
    format!("{:02}:{:02}", d.get_hours(), d.get_minutes())
}

/// The band, a rectangle per stretch with its state and times on hover.
#[component]
pub fn Timeline(segments: Vec<Segment>, start_ms: f64, now_ms: f64) -> impl IntoView {
    let span = (now_ms - start_ms).max(1.0);
    let x = move |ms: f64| (ms - start_ms) / span * WIDTH;
    let states: std::collections::BTreeSet<String> = segments.iter().map(|s| s.state.clone()).collect();
    view! {
        <figure class="figure timeline">
            <svg class="band" viewBox=format!("0 0 {WIDTH} {HEIGHT}") preserveAspectRatio="none" role="img"
                aria-label="State over the last hour">
                {segments.into_iter().map(|s| {
                    let label = format!("{} from {} to {} ({})", s.state, clock(s.start_ms), clock(s.end_ms),
                        format::millis(s.end_ms - s.start_ms));
                    view! {
                        <rect class=format!("seg seg-{}", s.state) data-state=s.state.clone() x=x(s.start_ms) y="0"
                            width=(x(s.end_ms) - x(s.start_ms)).max(1.0) height=HEIGHT>
                            <title>{label}</title>
                        </rect>
                    }
                }).collect_view()}
            </svg>
            <div class="axis muted"><span>{clock(start_ms)}</span><span>{clock((start_ms + now_ms) / 2.0)}</span><span>"now"</span></div>
            <ul class="legend">
                {states.into_iter().map(|s| view! { <li><span class=format!("swatch seg-{s}")></span>{s}</li> }).collect_view()}
            </ul>
        </figure>
    }
}
