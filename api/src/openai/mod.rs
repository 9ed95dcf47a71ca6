//! The OpenAI-compatible API: chat completions, completions, embeddings,
//! models, responses, reranking, and speech both ways.

pub mod audio;
pub mod chat;
pub(crate) mod choices;
pub mod completions;
pub mod embeddings;
pub mod models;
pub mod rerank;
mod respond;
pub mod responses;
pub(crate) mod single;
pub mod speech;
