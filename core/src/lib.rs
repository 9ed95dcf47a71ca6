//! GreenThread's domain vocabulary: what a model is, how it is named, and what a
//! generation asks for and returns. Nothing here touches a file, a socket or a clock.

pub mod artifact;
pub mod chat;
pub mod generation;
pub mod model_name;
pub mod model_spec;
pub mod sampling;

pub use artifact::{ArtifactError, ArtifactUri, Sha256Digest};
pub use chat::{ChatMessage, Role, ToolCall, ToolCallFunction};
pub use generation::{FinishReason, GenerationLimits, Usage};
pub use model_name::{ModelAlias, ModelName, NameError};
pub use model_spec::{ModelSpec, ModelSpecError, validate_model_set};
pub use sampling::{ParamError, SamplingParams, SamplingRequest};
