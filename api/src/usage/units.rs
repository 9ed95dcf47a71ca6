//! What a request is counted in besides tokens: seconds of audio heard,
//! characters spoken, documents ranked. Each is known before the answer's
//! head goes out, so the handler that runs the model puts them on the
//! answer as a header, which a gateway's forward keeps and the meter takes
//! off again.

use axum::http::HeaderValue;
use axum::response::Response;
use serde::{Deserialize, Serialize};

/// The header a node's answer carries its units in.
pub const UNITS_HEADER: &str = "x-greenthread-units";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Units {
    /// Milliseconds of audio heard.
    #[serde(default)]
    pub audio_ms: u64,
    /// Characters spoken.
    #[serde(default)]
    pub characters: u64,
    /// Documents ranked.
    #[serde(default)]
    pub documents: u64,
}

impl Units {
    pub fn audio_seconds(seconds: f64) -> Self {
        Self { audio_ms: (seconds.max(0.0) * 1000.0).round() as u64, ..Self::default() }
    }

    pub fn characters(n: usize) -> Self {
        Self { characters: n as u64, ..Self::default() }
    }

    pub fn documents(n: usize) -> Self {
        Self { documents: n as u64, ..Self::default() }
    }

    /// `response` carrying these units.
    pub fn on(self, mut response: Response) -> Response {
        if let Ok(value) = serde_json::to_string(&self).map(HeaderValue::try_from)
            && let Ok(value) = value
        {
            response.headers_mut().insert(UNITS_HEADER, value);
        }
        response
    }

    /// The units `response` carries, taken off it; none when it carries none.
    pub fn take(response: &mut Response) -> Self {
        response
            .headers_mut()
            .remove(UNITS_HEADER)
            .and_then(|v| serde_json::from_slice(v.as_bytes()).ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_ride_on_the_answer_and_come_off_once() {
        let mut response = Units::audio_seconds(19.4004).on(Response::new(axum::body::Body::empty()));
        assert_eq!(Units::take(&mut response), Units { audio_ms: 19_400, characters: 0, documents: 0 });
        assert_eq!(Units::take(&mut response), Units::default(), "taken off");
        assert_eq!(Units::take(&mut Units::documents(10).on(Response::new(axum::body::Body::empty()))).documents, 10);
    }
}
