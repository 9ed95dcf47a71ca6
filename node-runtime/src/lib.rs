//! GreenThread's node runtime: the builtin inference engine that turns a GGUF
//! file into a model serving token streams.

pub mod tokenizer;

#[cfg(any(test, feature = "test-util"))]
pub mod fixtures;
