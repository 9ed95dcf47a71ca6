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

/// A titled chart with a legend and the largest value on its axis.
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
) -> impl IntoView {
    let (marks, top) = marks(&data, buckets, kind);
    let slot = WIDTH / buckets.max(1) as f64;
    let legend = legend(&data);
    let empty = marks.is_empty();
    view! {
        <figure class="figure" data-chart=title>
            <figcaption>{title}<span class="muted">{format!(" (max {top:.0} {unit})")}</span></figcaption>
            <svg class="chart" viewBox=format!("0 0 {WIDTH} {HEIGHT}") role="img" aria-label=title>
                <line x1="0" y1=HEIGHT x2=WIDTH y2=HEIGHT stroke="#d9dee4" />
                {empty.then(|| view! { <text x=WIDTH / 2.0 y=HEIGHT / 2.0 text-anchor="middle" fill="#5b6470">"No data in this window"</text> })}
                {marks.into_iter().map(|m| {
                    let label = format!("{}: {:.0} {unit}", m.series, m.value);
                    if m.height > 0.0 {
                        view! {
                            <rect x=m.x y=m.y width=(slot - 2.0).max(1.0) height=m.height fill=m.colour data-series=m.series.clone()>
                                <title>{label}</title>
                            </rect>
                        }.into_any()
                    } else {
                        view! {
                            <circle cx=m.x cy=m.y r="3" fill=m.colour data-series=m.series.clone()>
                                <title>{label}</title>
                            </circle>
                        }.into_any()
                    }
                }).collect_view()}
            </svg>
            <div class="axis muted"><span>{since}</span><span>"now"</span></div>
            <ul class="legend">
                {legend.into_iter().map(|(name, colour)| view! {
                    <li><span class="swatch" style=format!("background:{colour}")></span>{name}</li>
                }).collect_view()}
            </ul>
        </figure>
    }
}
