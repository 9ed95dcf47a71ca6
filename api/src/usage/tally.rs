//! Token counts of an answer generated in this process, handed to the meter
//! as typed values by the handler that generates it.

use std::sync::{Arc, Mutex, PoisonError};

/// The handler writes the counts as the answer ends (and marks a failure
/// mid-stream); the meter reads them once the body has gone out. An answer
/// forwarded from a node carries none: the meter reads that one's counts
/// from the answer itself, the only place they exist in this process.
#[derive(Debug, Clone, Default)]
pub struct Tally(Arc<Mutex<Counted>>);

/// What a [`Tally`] holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    /// Prompt and completion tokens, once the answer reported them.
    pub tokens: Option<(u32, u32)>,
    /// The answer ended in an error after it began.
    pub failed: bool,
}

impl Tally {
    /// The answer's prompt and completion tokens.
    pub fn tokens(&self, prompt: u32, completion: u32) {
        self.lock().tokens = Some((prompt, completion));
    }

    /// The answer broke off with an error.
    pub fn failed(&self) {
        self.lock().failed = true;
    }

    /// What was reported so far.
    pub fn read(&self) -> Counted {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counted> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_what_is_reported() {
        let tally = Tally::default();
        let handler = tally.clone();
        assert_eq!(tally.read(), Counted::default());
        handler.tokens(12, 5);
        handler.failed();
        assert_eq!(tally.read(), Counted { tokens: Some((12, 5)), failed: true });
    }
}
