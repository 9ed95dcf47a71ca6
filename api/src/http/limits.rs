//! Request limits, checked before a request reaches its handler.

use std::time::Duration;

/// Request limits, each with the reason for its default.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body, in bytes. 8 MiB holds a long conversation (a
    /// 100k-token context is ~400 KB of text) with room for tool schemas.
    pub max_request_bytes: usize,
    /// Most choices (`n`) one request may ask for: each is a sequence in the batch.
    pub max_choices: u32,
    /// Longest a request waits for its model to wake before a 503.
    pub wake_timeout: Duration,
    /// Longest a request body may take to arrive once its headers have.
    pub body_read_timeout: Duration,
}

impl Limits {
    /// What request validation checks against: these limits, and the
    /// builtin engine's grammar compiler (every engine GreenThread runs
    /// enforces grammars through llguidance).
    pub fn rules(&self) -> greenthread_protocol::openai::validate::Rules<'static> {
        greenthread_protocol::openai::validate::Rules {
            max_choices: self.max_choices,
            enforceable: &greenthread_node_runtime::constraint::check,
        }
    }

    /// What a request body may be under these limits.
    pub fn body(&self) -> super::intake::BodyLimits {
        super::intake::BodyLimits { max_bytes: self.max_request_bytes, timeout: self.body_read_timeout }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 8 * 1024 * 1024,
            max_choices: 8,
            wake_timeout: Duration::from_secs(30),
            body_read_timeout: super::intake::BODY_READ_TIMEOUT,
        }
    }
}
