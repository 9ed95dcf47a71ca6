//! Anthropic's Messages API: request types and the translation to and from
//! OpenAI's chat completions.

mod blocks;
pub mod translate;
pub mod types;
