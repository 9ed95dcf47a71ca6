//! OpenAI's API: request and response types and their validation.

pub mod guided;
pub mod logprobs;
pub mod tools;
pub mod types;
pub mod validate;
