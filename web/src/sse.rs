//! Server-sent events read from a byte stream that arrives in arbitrary
//! pieces: an event, or a character, may be split across two of them.

/// Collects the stream's bytes and hands out each complete event's `data`,
/// keeping its comment lines aside.
#[derive(Debug, Default)]
pub struct SseReader {
    pending: Vec<u8>,
    comments: Vec<String>,
}

impl SseReader {
    /// Adds a piece of the stream; the `data` of every event it completed.
    pub fn push(&mut self, piece: &[u8]) -> Vec<String> {
        self.pending.extend(piece.iter().filter(|b| **b != b'\r'));
        let mut out = Vec::new();
        while let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = self.pending.drain(..end + 2).collect();
            let event = String::from_utf8_lossy(&event);
            let comments = event.lines().filter_map(|l| l.strip_prefix(':')).map(|c| c.trim().to_owned());
            self.comments.extend(comments);
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

    /// The comment lines read so far (a waiting stream's `: waking …`), once each.
    pub fn take_comments(&mut self) -> Vec<String> {
        std::mem::take(&mut self.comments)
    }
}
