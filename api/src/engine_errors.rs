//! Errors of the model manager and the engines, mapped to the API's errors.

use greenthread_protocol::error::ApiError;
use greenthread_scheduler::AcquireError;

/// A lease that could not be had, as the client is told.
pub fn from_acquire(e: AcquireError) -> ApiError {
    match e {
        AcquireError::UnknownModel(model) => ApiError::ModelNotFound(model),
        AcquireError::Timeout { model, waited, retry_after } => ApiError::Waking {
            model,
            waited_s: waited.as_secs(),
            retry_after_s: retry_after.as_secs_f64().ceil().max(1.0) as u64,
        },
        AcquireError::Failed { model, reason } => ApiError::ModelFailed { model, reason },
        AcquireError::TooLarge { model, needed } => ApiError::ModelFailed {
            model,
            reason: format!("it needs {needed} bytes of device memory, more than any node's device budget"),
        },
        AcquireError::Stopped => ApiError::Unavailable("the server is shutting down".into()),
    }
}

/// An engine's refusal or failure, as the client is told.
pub fn from_engine(e: greenthread_node_runtime::Error) -> ApiError {
    use greenthread_node_runtime::Error as E;
    match e {
        E::ContextLengthExceeded { .. } => ApiError::ContextLengthExceeded(e.to_string()),
        E::Template(_) | E::NoChatTemplate => ApiError::invalid("messages", e.to_string()),
        E::EmptyPrompt | E::TokenOutOfRange(_) => ApiError::invalid("prompt", e.to_string()),
        E::BiasOutOfRange(_) => ApiError::invalid("logit_bias", e.to_string()),
        E::Grammar(_) => ApiError::invalid("response_format", e.to_string()),
        E::Stopped | E::Asleep | E::Engine(_) => ApiError::Unavailable(e.to_string()),
        E::WrongKind(_) => ApiError::invalid("model", e.to_string()),
        E::Invalid { param, message } => ApiError::invalid(param, message),
        E::Busy(held) => ApiError::Overloaded { model: None, in_flight: held as u64, retry_after_s: 1 },
        other => ApiError::Internal(other.to_string()),
    }
}
