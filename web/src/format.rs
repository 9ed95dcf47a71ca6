//! How numbers and times read on the pages.

/// Bytes in the largest binary unit that keeps the number at least 1.
pub fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let x = n as f64;
    match n {
        0 => "0 B".into(),
        n if n < 1 << 10 => format!("{n} B"),
        n if n < 1 << 20 => format!("{:.1} KiB", x / KIB),
        n if n < 1 << 30 => format!("{:.1} MiB", x / (KIB * KIB)),
        _ => format!("{:.1} GiB", x / (KIB * KIB * KIB)),
    }
}

/// Milliseconds as ms below ten seconds, else seconds.
pub fn millis(ms: f64) -> String {
    if ms < 10_000.0 { format!("{ms:.0} ms") } else { format!("{:.1} s", ms / 1000.0) }
}

/// How long before `now_ms` the instant `at_ms` was, in words.
pub fn ago(at_ms: f64, now_ms: f64) -> String {
    let s = ((now_ms - at_ms) / 1000.0).max(0.0);
    match s {
        s if s < 5.0 => "just now".into(),
        s if s < 60.0 => format!("{s:.0} s ago"),
        s if s < 3600.0 => format!("{:.0} min ago", (s / 60.0).floor()),
        s if s < 86_400.0 => format!("{:.0} h ago", (s / 3600.0).floor()),
        s => format!("{:.0} d ago", (s / 86_400.0).floor()),
    }
}

/// An RFC 3339 instant from the server, relative to now; empty input reads "never".
pub fn ago_rfc3339(at: Option<&str>) -> String {
    match at.map(js_sys::Date::parse) {
        Some(ms) if ms.is_finite() => ago(ms, js_sys::Date::now()),
        _ => "never".into(),
    }
}

/// The share `used / budget` as a percentage clamped to 0..=100.
pub fn percent(used: u64, budget: u64) -> f64 {
    if budget == 0 { 0.0 } else { (used as f64 * 100.0 / budget as f64).clamp(0.0, 100.0) }
}
