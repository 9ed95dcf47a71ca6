//! Charts drawn as SVG: values per time bucket, either stacked bars (counts
//! that add up, like tokens) or points (values that do not, like latency).

use leptos::prelude::*;

pub const WIDTH: f64 = 600.0;
pub const HEIGHT: f64 = 160.0;
/// Room above the largest point, so its dot is drawn whole.
const POINT_ROOM: f64 = 6.0;
/// Series colours, by series in name order.
const COLOURS: &[&str] = &["#1f7a4d", "#3b6fd8", "#c26a12", "#8a3ea8", "#b42318", "#4b5563"];

/// One value of one series in one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub bucket: usize,
    pub series: String,
    pub value: f64,
}

/// How a chart draws its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stacked,
    Points,
}

/// One drawn mark: a bar segment (height > 0) or a point (height = 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub x: f64,
    pub y: f64,
    pub height: f64,
    pub series: String,
    pub value: f64,
    pub colour: &'static str,
}

/// The series in name order with their colours.
pub fn legend(data: &[Datum]) -> Vec<(String, &'static str)> {
    let names: std::collections::BTreeSet<&str> = data.iter().map(|d| d.series.as_str()).collect();
    names.into_iter().enumerate().map(|(i, n)| (n.to_owned(), COLOURS[i % COLOURS.len()])).collect()
}

/// The marks for `data` over `buckets` slots, scaled so the largest stack
/// (or point) reaches the top; and that largest value.
pub fn marks(data: &[Datum], buckets: usize, kind: Kind) -> (Vec<Mark>, f64) {
    let colours = legend(data);
    let colour = |s: &str| colours.iter().find(|(n, _)| n == s).map_or(COLOURS[0], |(_, c)| *c);
    let buckets = buckets.max(1);
    let mut per_bucket: Vec<Vec<&Datum>> = vec![Vec::new(); buckets];
    for d in data.iter().filter(|d| d.bucket < buckets && d.value > 0.0) {
        per_bucket[d.bucket].push(d);
    }
    for b in &mut per_bucket {
        b.sort_by(|x, y| x.series.cmp(&y.series));
    }
    let top = per_bucket
        .iter()
        .map(|b| match kind {
            Kind::Stacked => b.iter().map(|d| d.value).sum::<f64>(),
            Kind::Points => b.iter().map(|d| d.value).fold(0.0, f64::max),
        })
        .fold(0.0, f64::max);
    let room = if kind == Kind::Points { HEIGHT - POINT_ROOM } else { HEIGHT };
    let scale = if top > 0.0 { room / top } else { 0.0 };
    let slot = WIDTH / buckets as f64;
    let mut out = Vec::new();
    for (i, bucket) in per_bucket.into_iter().enumerate() {
        let mut base = HEIGHT;
        for d in bucket {
            let (y, height) = match kind {
                Kind::Stacked => {
                    base -= d.value * scale;
                    (base, d.value * scale)
                }
                Kind::Points => (HEIGHT - d.value * scale, 0.0),
            };
            let x = match kind {
                Kind::Stacked => i as f64 * slot + 1.0,
                Kind::Points => i as f64 * slot + slot / 2.0,
            };
            out.push(Mark { x, y, height, series: d.series.clone(), value: d.value, colour: colour(&d.series) });
        }
    }
    (out, top)
}

/// Room left of the plot for the value axis, and above it for the top label.
const LEFT: f64 = 40.0;
const TOP: f64 = 18.0;

/// Round values for the value axis from 0 up to at least `top`: steps of
/// 1, 2 or 5 times a power of ten, at most five of them.
pub fn ticks(top: f64) -> Vec<f64> {
    if !(top.is_finite() && top > 0.0) {
        return vec![0.0];
    }
    let rough = top / 4.0;
    let power = 10f64.powf(rough.log10().floor());
    let step =
        [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|s| top / s <= 4.0 + 1e-9).unwrap_or(10.0 * power);
    let count = (top / step).ceil() as usize;
    (0..=count).map(|i| i as f64 * step).collect()
}

/// A value as an axis writes it: 950, 1.2k, 3.4M.
pub fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn clock(ms: f64) -> String {
    let d = js_sys::Date::new(&ms.into());
    format!("{:02}:{:02}", d.get_hours(), d.get_minutes())
}

/// What the readout says for one bucket: its values by series.
fn readout(data: &[Datum], bucket: usize, unit: &str) -> String {
    let mut values: Vec<&Datum> = data.iter().filter(|d| d.bucket == bucket && d.value > 0.0).collect();
    values.sort_by(|a, b| a.series.cmp(&b.series));
    if values.is_empty() {
        return "nothing".into();
    }
    values.iter().map(|d| format!("{} {} {unit}", d.series, compact(d.value))).collect::<Vec<_>>().join(" · ")
}

/// A titled chart with a value axis in its unit, time along the bottom, a
/// readout of the bucket under the pointer, and a legend. Buckets where
/// nothing happened stay empty.
#[component]
pub fn Chart(
    title: &'static str,
    /// What a value counts: "tokens", "ms".
    unit: &'static str,
    data: Vec<Datum>,
    buckets: usize,
    kind: Kind,
    /// What the left edge is: "60 min ago".
    #[prop(default = "")]
    since: &'static str,
    /// When the first bucket starts and how long each is (ms since the
    /// epoch); with them the axis and the readout tell the time.
    #[prop(default = 0.0)]
    start_ms: f64,
    #[prop(default = 0.0)] bucket_ms: f64,
) -> impl IntoView {
    let (marks, top) = marks(&data, buckets, kind);
    let buckets = buckets.max(1);
    let slot = WIDTH / buckets as f64;
    let legend = legend(&data);
    let empty = marks.is_empty();
    let axis = ticks(top);
    let axis_top = axis.last().copied().unwrap_or(0.0).max(top);
    // Marks are scaled to `top`; the axis reaches a round value at or above it.
    let scale = if axis_top > 0.0 && top > 0.0 { top / axis_top } else { 1.0 };
    let room = if kind == Kind::Points { HEIGHT - POINT_ROOM } else { HEIGHT };
    let y_of = move |v: f64| if axis_top > 0.0 { HEIGHT - v / axis_top * room } else { HEIGHT };
    let hovered = RwSignal::new(None::<usize>);
    let timed = bucket_ms > 0.0;
    let when = move |i: usize| {
        let from = start_ms + i as f64 * bucket_ms;
        format!("{}–{}", clock(from), clock(from + bucket_ms))
    };
    let data = StoredValue::new(data);
    let (left_label, middle_label) = if timed {
        (clock(start_ms), clock(start_ms + bucket_ms * buckets as f64 / 2.0))
    } else {
        (since.to_owned(), String::new())
    };
    view! {
        <figure class="figure" data-chart=title>
            <figcaption>{title}<span class="muted">{format!(" (max {} {unit})", compact(top))}</span></figcaption>
            <svg class="chart" viewBox=format!("0 0 {} {}", WIDTH + LEFT, HEIGHT + TOP + 4.0) role="img" aria-label=title
                on:mouseleave=move |_| hovered.set(None)>
                <text class="tick unit" x="2" y="11">{unit}</text>
                <g transform=format!("translate({LEFT} {TOP})")>
                    {axis.iter().map(|v| {
                        let y = y_of(*v);
                        view! {
                            <line class="grid" x1="0" y1=y x2=WIDTH y2=y />
                            <text class="tick" x="-6" y=y + 4.0 text-anchor="end">{compact(*v)}</text>
                        }
                    }).collect_view()}
                    {empty.then(|| view! { <text x=WIDTH / 2.0 y=HEIGHT / 2.0 text-anchor="middle" fill="#5b6470">"No data in this window"</text> })}
                    {marks.into_iter().map(|m| {
                        let label = format!("{}: {} {unit}", m.series, compact(m.value));
                        let (y, height) = (HEIGHT - (HEIGHT - m.y) * scale, m.height * scale);
                        if m.height > 0.0 {
                            view! {
                                <rect x=m.x y=y width=(slot - 2.0).max(1.0) height=height fill=m.colour data-series=m.series.clone()>
                                    <title>{label}</title>
                                </rect>
                            }.into_any()
                        } else {
                            view! {
                                <circle cx=m.x cy=y r="3" fill=m.colour data-series=m.series.clone()>
                                    <title>{label}</title>
                                </circle>
                            }.into_any()
                        }
                    }).collect_view()}
                    {(0..buckets).map(|i| view! {
                        <rect class="zone" data-bucket=i x=i as f64 * slot y="0" width=slot height=HEIGHT
                            class:hovered=move || hovered.get() == Some(i) on:mouseenter=move |_| hovered.set(Some(i)) />
                    }).collect_view()}
                </g>
            </svg>
            <div class="axis muted"><span>{left_label}</span><span>{middle_label}</span><span>"now"</span></div>
            <p class="readout muted" data-readout>{move || hovered.get().map(|i| {
                let at = if timed { when(i) } else { format!("bucket {}", i + 1) };
                format!("{at}: {}", data.with_value(|d| readout(d, i, unit)))
            })}</p>
            <ul class="legend">
                {legend.into_iter().map(|(name, colour)| view! {
                    <li><span class="swatch" style=format!("background:{colour}")></span>{name}</li>
                }).collect_view()}
            </ul>
        </figure>
    }
}
