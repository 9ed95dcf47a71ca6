//! The last lines an engine wrote, kept per model within a byte bound, so a
//! crash can say why and an operator can read what the engine said.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex, PoisonError};

/// Most bytes of output kept per engine: enough for a Python traceback.
pub const LOG_BYTES: usize = 256 * 1024;
/// Longest line kept whole; longer ones are cut (progress bars, dumps).
const LINE_BYTES: usize = 4096;

/// A bounded ring of output lines, shared by the readers and the node.
#[derive(Clone, Default)]
pub struct LogRing {
    inner: Arc<Mutex<Ring>>,
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<String>,
    bytes: usize,
}

impl LogRing {
    /// Adds a line, dropping the oldest while over [`LOG_BYTES`].
    pub fn push(&self, line: &str) {
        let mut line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.len() > LINE_BYTES {
            let mut cut = LINE_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        let mut ring = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        ring.bytes += line.len();
        ring.lines.push_back(line);
        while ring.bytes > LOG_BYTES {
            let Some(old) = ring.lines.pop_front() else { break };
            ring.bytes -= old.len();
        }
    }

    /// The last `n` lines, oldest first.
    pub fn last(&self, n: usize) -> Vec<String> {
        let ring = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        ring.lines.iter().skip(ring.lines.len().saturating_sub(n)).cloned().collect()
    }

    /// Reads `source` line by line into the ring on a thread of its own,
    /// until the engine closes it; the thread, if it started.
    pub fn follow(
        &self,
        source: impl Read + Send + 'static,
        stream: &'static str,
    ) -> Option<std::thread::JoinHandle<()>> {
        let ring = self.clone();
        let spawned = std::thread::Builder::new().name(format!("engine-{stream}")).spawn(move || {
            let mut reader = BufReader::new(source);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => ring.push(&String::from_utf8_lossy(&buf)),
                }
            }
        });
        spawned.map_err(|e| tracing::warn!(error = %e, "Could not follow an engine's output")).ok()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn it_keeps_the_last_lines_and_cuts_long_ones() {
        let ring = LogRing::default();
        for i in 0..5 {
            ring.push(&format!("line {i}\n"));
        }
        assert_eq!(ring.last(2), ["line 3", "line 4"]);
        ring.push(&"é".repeat(LINE_BYTES));
        let long = ring.last(1).remove(0);
        assert!(long.len() <= LINE_BYTES + '…'.len_utf8() && long.ends_with('…'));
    }

    proptest! {
        #[test]
        fn it_never_holds_more_than_its_bound(lines in proptest::collection::vec(0usize..LINE_BYTES * 2, 1..400)) {
            let ring = LogRing::default();
            for len in &lines {
                ring.push(&"x".repeat(*len));
            }
            let kept: usize = ring.last(usize::MAX).iter().map(String::len).sum();
            prop_assert!(kept <= LOG_BYTES + LINE_BYTES);
            prop_assert!(!ring.last(1).is_empty(), "the newest line is always kept");
        }
    }
}
