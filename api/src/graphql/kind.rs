//! A model's kind as GraphQL shows and takes it.

use async_graphql::Enum;
use greenthread_core::ModelKind;

/// What a model does: `CHAT`, `EMBEDDING`, `ASR` (speech to text), `TTS`
/// (text to speech) or `RERANKER`.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "ModelKind", remote = "ModelKind")]
pub enum GqlModelKind {
    Chat,
    Embedding,
    Asr,
    Tts,
    Reranker,
}

impl GqlModelKind {
    pub fn of(kind: ModelKind) -> Self {
        kind.into()
    }
}
