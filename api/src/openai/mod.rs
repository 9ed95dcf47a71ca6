//! The OpenAI-compatible API: chat completions, completions, embeddings, models.

pub mod chat;
pub(crate) mod choices;
pub mod completions;
pub mod embeddings;
pub mod models;
