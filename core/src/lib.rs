//! GreenThread's domain vocabulary: what a model is, how it is named, and what a
//! generation asks for and returns. Nothing here touches a file, a socket or a clock.

pub mod artifact;
pub mod chat;
pub mod desired;
pub mod engine;
pub mod generation;
pub mod grammar;
pub mod lifecycle;
pub mod lru;
pub mod model_kind;
pub mod model_name;
pub mod model_spec;
pub mod node;
pub mod rate_limit;
pub mod redact;
pub mod sampling;
pub mod units;
pub mod wake_progress;

pub use artifact::{ArtifactError, ArtifactUri, Sha256Digest};
pub use chat::{ChatMessage, Role, ToolCall, ToolCallFunction};
pub use generation::{FinishReason, GenerationLimits, TokenLogprob, TokenText, Usage};
pub use lifecycle::{IllegalTransition, ModelState, Tier, WarmTier};
pub use model_kind::{ModelKind, Task};
pub use model_name::{ModelAlias, ModelName, NameError, NodeId, ProjectName, ServiceName};
pub use model_spec::{Admission, ModelSpec, ModelSpecError, Scaling, default_project, validate_model_set};
pub use node::{NodeControl, NodeError, NodeFuture, StageReport, TierUsage, WakeReport};
pub use sampling::{MAX_LOGIT_BIAS, ParamError, SamplingParams, SamplingRequest};
pub use units::{ByteSize, UnitError, format_duration, parse_duration};
pub use wake_progress::WakeProgress;
