//! The wire protocols GreenThread speaks to clients: OpenAI's and
//! Anthropic's request and response types, the Responses API's, their validation into the
//! engine's vocabulary (sampling, tools, output grammars), the translation
//! between them, and the one mapping of errors to each ecosystem's shape.
//! No database, no engine, no Kubernetes.

pub mod anthropic;
pub mod error;
pub mod ids;
pub mod json;
pub mod openai;
pub mod responses;
pub mod sse;

pub use error::{ApiError, ApiResult};
