//! GreenThread's node runtime: the builtin inference engine that turns a GGUF
//! file into a model serving token streams.

pub mod asr;
pub mod builtin;
pub mod chat_template;
pub mod constraint;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod embed;
pub mod engine;
mod error;
pub mod external;
pub mod fill_in_middle;
pub mod node;
pub mod sampler;
pub mod text_stream;
pub mod tokenizer;
pub mod tts;
pub mod vocabulary;

#[cfg(any(test, feature = "test-util"))]
pub mod fixtures;

pub use engine::{
    EmbeddingInput, EngineLoad, GenerateRequest, GenerationEvent, GenerationStream, ModelInfo, ModelInstance, Scored,
    ServedModel, TokenLogprob, TokenText, WeightSource,
};
pub use error::{Error, Result};
