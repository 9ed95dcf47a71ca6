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

/// One recorded change: when, from which state, to which.
#[derive(Debug, Clone, PartialEq)]
pub struct Step<'a> {
    pub at_ms: f64,
    pub from: &'a str,
    pub to: &'a str,
}

/// The states over `[start_ms, now_ms]`: before the first change the model
/// was in that change's `from` (in `current` when nothing changed), and each
/// change starts a stretch of its `to`. Steps outside the window are
/// clipped. `absent` (before the server had the model) is left out: a gap.
pub fn segments(steps: &[Step<'_>], current: Option<&str>, start_ms: f64, now_ms: f64) -> Vec<Segment> {
    let mut steps: Vec<&Step<'_>> = steps.iter().filter(|s| s.at_ms <= now_ms).collect();
    steps.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
    let first_state = steps.first().map(|s| s.from).or(current);
    let Some(mut state) = first_state.map(str::to_owned) else { return Vec::new() };
    let mut out: Vec<Segment> = Vec::new();
    let mut since = start_ms;
    for step in steps {
        let at = step.at_ms.max(start_ms);
        if at > since {
            out.push(Segment { state: state.clone(), start_ms: since, end_ms: at });
        }
        state = step.to.to_owned();
        since = at;
    }
    if now_ms > since {
        out.push(Segment { state, start_ms: since, end_ms: now_ms });
    }
    // Neighbours in the same state (a replica's change that left the model's state as it was) are one stretch.
    out.retain(|s| s.state != "absent");
    out.dedup_by(|later, earlier| {
        let same = later.state == earlier.state;
        if same {
            earlier.end_ms = later.end_ms;
        }
        same
    });
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
