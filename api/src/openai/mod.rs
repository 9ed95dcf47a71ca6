//! The OpenAI-compatible API: chat completions, completions, embeddings,
//! models and responses.

pub mod chat;
pub(crate) mod choices;
pub mod completions;
pub mod embeddings;
pub mod rerank;
pub mod models;
mod respond;
pub mod responses;
pub(crate) mod single;
