//! Server-sent events read back from bytes: the one parser for every
//! stream GreenThread reads (a node's answer relayed by a gateway, metered,
//! or translated to Anthropic's events). It follows the WHATWG rules that
//! matter here: lines end in `\n`, `\r\n` or `\r`; the `data:` lines of one
//! event join with `\n`; a blank line ends the event; lines starting with
//! `:` are comments; one space after a field's colon is dropped.
//!
//! Written here rather than taken from `eventsource-stream`, which drops
//! comment lines: GreenThread's answers carry their usage in a `: usage`
//! comment when the client did not ask for a usage chunk, and metering
//! reads it.

/// What one stream holds, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// An event: its `event:` name, if any, and its data.
    Event { name: Option<String>, data: String },
    /// A comment line, without its colon and one leading space.
    Comment(String),
}

/// A line longer than this is dropped whole (to its end): a stream cannot
/// make the reader hold more.
pub const MAX_LINE_BYTES: usize = 8 << 20;

/// Parses a stream fed in chunks of any size.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The line being read is too long and is skipped to its end.
    skipping: bool,
    /// The last byte fed was `\r`: a `\n` right after it ends no line.
    after_cr: bool,
    name: Option<String>,
    data: Option<String>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// The items `bytes` completes.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseItem> {
        let mut items = Vec::new();
        for &b in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
            match b {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    if !std::mem::take(&mut self.skipping) {
                        let line = std::mem::take(&mut self.line);
                        self.on_line(&String::from_utf8_lossy(&line), &mut items);
                    }
                    self.line.clear();
                }
                _ if self.skipping => {}
                _ if self.line.len() >= MAX_LINE_BYTES => {
                    self.line.clear();
                    self.skipping = true;
                }
                _ => self.line.push(b),
            }
        }
        items
    }

    fn on_line(&mut self, line: &str, items: &mut Vec<SseItem>) {
        if line.is_empty() {
            let name = self.name.take();
            if let Some(data) = self.data.take() {
                items.push(SseItem::Event { name, data });
            }
            return;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "" => items.push(SseItem::Comment(value.to_owned())),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.name = Some(value.to_owned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn event(name: Option<&str>, data: &str) -> SseItem {
        SseItem::Event { name: name.map(str::to_owned), data: data.to_owned() }
    }

    const STREAM: &str = ": usage {\"prompt_tokens\":3}\r\ndata: {\"a\":1}\n\nevent: message_start\rdata: x\rdata:y\r\r\
                          id: 7\nretry: 10\ndata\n\ndata: [DONE]\n\n";

    #[test]
    fn events_comments_and_every_line_ending() {
        let items = SseParser::new().feed(STREAM.as_bytes());
        assert_eq!(
            items,
            [
                SseItem::Comment("usage {\"prompt_tokens\":3}".into()),
                event(None, "{\"a\":1}"),
                event(Some("message_start"), "x\ny"),
                event(None, ""),
                event(None, "[DONE]"),
            ]
        );
    }

    #[test]
    fn an_unfinished_event_waits_for_its_blank_line() {
        let mut p = SseParser::new();
        assert!(p.feed(b"data: half").is_empty());
        assert!(p.feed(b"\n").is_empty());
        assert_eq!(p.feed(b"\n"), [event(None, "half")]);
    }

    #[test]
    fn an_overlong_line_is_dropped_and_the_stream_goes_on() {
        let mut p = SseParser::new();
        let mut long = b"data: ".to_vec();
        long.resize(MAX_LINE_BYTES + 10, b'x');
        assert!(p.feed(&long).is_empty());
        assert_eq!(p.feed(b"\n\ndata: next\n\n"), [event(None, "next")]);
    }

    proptest! {
        #[test]
        fn chunking_never_changes_what_is_read(cuts in proptest::collection::vec(0usize..STREAM.len(), 0..12)) {
            let bytes = STREAM.as_bytes();
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut p = SseParser::new();
            let mut items = Vec::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                items.extend(p.feed(&bytes[from..cut]));
                from = cut;
            }
            prop_assert_eq!(items, SseParser::new().feed(bytes));
        }
    }
}
