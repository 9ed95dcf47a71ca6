//! Anthropic's Messages API: request types, the translation of a request to
//! a chat request, and answers built from what the model generated.

pub mod answer;
mod blocks;
pub mod translate;
pub mod types;
