//! The node runtime's error type.

use std::path::PathBuf;

/// Everything that can go wrong loading a model or generating from it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read model file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("model file {path} cannot be served: {reason}")]
    InvalidModel { path: PathBuf, reason: String },
    #[error("model file {path} has sha256 {actual}, but its spec requires {expected}")]
    DigestMismatch { path: PathBuf, expected: String, actual: String },
    /// The chat template refused the conversation (e.g. roles that do not alternate).
    #[error("the model's chat template rejected the messages: {0}")]
    Template(String),
    #[error("this model has no chat template; use the completions endpoint or set `chat_template` in its config")]
    NoChatTemplate,
    #[error(
        "this model's context window is {context} tokens; the prompt has {prompt} tokens and {requested} more were requested"
    )]
    ContextLengthExceeded { prompt: usize, requested: usize, context: usize },
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("token id {0} is outside the model's vocabulary")]
    TokenOutOfRange(u32),
    #[error("logit_bias names token id {0}, which is outside the model's vocabulary")]
    BiasOutOfRange(u32),
    /// The output's grammar does not compile against this model's vocabulary.
    #[error("the output's grammar cannot be enforced: {0}")]
    Grammar(String),
    #[error("the model is shutting down")]
    Stopped,
    /// The model holds as many sequences, running and waiting, as it may.
    #[error("the model already holds {0} sequences, running and waiting")]
    Busy(usize),
    #[error("the model is asleep; it must wake before it can generate")]
    Asleep,
    #[error("inference failed: {0}")]
    Inference(String),
    /// A model's files are readable but describe something this engine cannot run.
    #[error("the model cannot be served: {0}")]
    Unservable(String),
    /// An external engine could not be started, woken or put to sleep.
    #[error("{0}")]
    Engine(String),
    /// The model is of another kind than the request needs (chat vs embeddings).
    #[error("{0}")]
    WrongKind(String),
    /// A request's field the model cannot honour (an unknown language).
    #[error("{message}")]
    Invalid { param: &'static str, message: String },
}

impl Error {
    pub(crate) fn invalid(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Self::InvalidModel { path: path.into(), reason: reason.to_string() }
    }

    /// Whether the request, not the server, is at fault.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Self::Template(_)
                | Self::NoChatTemplate
                | Self::ContextLengthExceeded { .. }
                | Self::EmptyPrompt
                | Self::TokenOutOfRange(_)
                | Self::BiasOutOfRange(_)
                | Self::Grammar(_)
                | Self::WrongKind(_)
                | Self::Invalid { .. }
        )
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Self::Inference(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
