//! Server-sent events read from a byte stream that arrives in arbitrary
//! pieces: an event, or a character, may be split across two of them.

/// Collects the stream's bytes and hands out each complete event's `data`.
#[derive(Debug, Default)]
pub struct SseReader {
    pending: Vec<u8>,
}

impl SseReader {
    /// Adds a piece of the stream; the `data` of every event it completed.
    pub fn push(&mut self, piece: &[u8]) -> Vec<String> {
        self.pending.extend(piece.iter().filter(|b| **b != b'\r'));
        let mut out = Vec::new();
        while let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = self.pending.drain(..end + 2).collect();
            let event = String::from_utf8_lossy(&event);
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                out.push(data.join("\n"));
            }
        }
        out
    }
}
