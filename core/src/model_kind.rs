//! What a model does, and which API routes that lets it serve.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kind of a model: what its artifact computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Generates text: chat, completions, messages, responses.
    Chat,
    /// Turns text into vectors (and scores documents by their similarity).
    Embedding,
    /// Speech recognition: audio in, text out.
    Asr,
    /// Text to speech: text in, audio out.
    Tts,
    /// Scores documents against a query (a cross-encoder).
    Reranker,
}

/// What a request asks a model to do, one per family of routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// `/v1/chat/completions`, `/v1/completions`, `/v1/messages`, `/v1/responses`.
    Generate,
    /// `/v1/embeddings`.
    Embed,
    /// `/v1/audio/transcriptions` and `/v1/audio/translations`.
    Transcribe,
    /// `/v1/audio/speech`.
    Speak,
    /// `/v1/rerank` and `/v1/score`.
    Rerank,
}

impl ModelKind {
    pub const ALL: [Self; 5] = [Self::Chat, Self::Embedding, Self::Asr, Self::Tts, Self::Reranker];

    /// Whether a model of this kind does `task`. Rerank is served by
    /// rerankers and, as the cosine similarity of their vectors, by
    /// embedding models (as vLLM scores with them).
    pub fn serves(self, task: Task) -> bool {
        matches!(
            (self, task),
            (Self::Chat, Task::Generate)
                | (Self::Embedding, Task::Embed | Task::Rerank)
                | (Self::Asr, Task::Transcribe)
                | (Self::Tts, Task::Speak)
                | (Self::Reranker, Task::Rerank)
        )
    }

    /// The kinds that do `task`, for an error that says where to go.
    pub fn serving(task: Task) -> Vec<Self> {
        Self::ALL.into_iter().filter(|k| k.serves(task)).collect()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Embedding => "embedding",
            Self::Asr => "asr",
            Self::Tts => "tts",
            Self::Reranker => "reranker",
        }
    }

    /// Parses the lowercase name a spec uses.
    ///
    /// # Errors
    /// The names that are accepted, when `text` is none of them.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|k| k.as_str() == text).ok_or_else(|| {
            let names: Vec<_> = Self::ALL.iter().map(|k| k.as_str()).collect();
            format!("unknown model kind {text:?}; one of {}", names.join(", "))
        })
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Task {
    /// The routes of this task, for messages.
    pub fn routes(self) -> &'static str {
        match self {
            Self::Generate => "/v1/chat/completions, /v1/completions, /v1/messages and /v1/responses",
            Self::Embed => "/v1/embeddings",
            Self::Transcribe => "/v1/audio/transcriptions and /v1/audio/translations",
            Self::Speak => "/v1/audio/speech and /v1/audio/voices",
            Self::Rerank => "/v1/rerank and /v1/score",
        }
    }
}

/// Why a model of `kind` refuses `task`, naming the kinds that serve it.
pub fn wrong_kind(model: &str, kind: ModelKind, task: Task) -> String {
    let serving: Vec<_> = ModelKind::serving(task).iter().map(|k| k.as_str()).collect();
    let article = if matches!(kind, ModelKind::Asr | ModelKind::Embedding) { "an" } else { "a" };
    let routes = task.routes();
    let verb = if routes.contains(" and ") { "are" } else { "is" };
    format!("model {model} is {article} {kind} model; {routes} {verb} served by {} models", serving.join(" and "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASKS: [Task; 5] = [Task::Generate, Task::Embed, Task::Transcribe, Task::Speak, Task::Rerank];

    #[test]
    fn every_task_has_a_kind_and_every_kind_a_task() {
        for task in TASKS {
            assert!(!ModelKind::serving(task).is_empty(), "{task:?}");
        }
        for kind in ModelKind::ALL {
            assert!(TASKS.iter().any(|t| kind.serves(*t)), "{kind}");
        }
    }

    #[test]
    fn each_kind_serves_its_own_routes_only() {
        assert!(ModelKind::Chat.serves(Task::Generate));
        assert!(!ModelKind::Chat.serves(Task::Transcribe));
        assert!(!ModelKind::Asr.serves(Task::Generate));
        assert!(ModelKind::Embedding.serves(Task::Rerank));
        assert!(!ModelKind::Reranker.serves(Task::Embed));
        assert_eq!(ModelKind::serving(Task::Rerank), [ModelKind::Embedding, ModelKind::Reranker]);
    }

    #[test]
    fn names_round_trip_and_unknown_ones_list_the_choices() {
        for kind in ModelKind::ALL {
            assert_eq!(ModelKind::parse(kind.as_str()), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        let err = ModelKind::parse("vision").unwrap_err();
        assert!(err.contains("chat, embedding, asr, tts, reranker"), "{err}");
    }

    #[test]
    fn the_refusal_names_where_to_go() {
        let message = wrong_kind("qwen", ModelKind::Chat, Task::Transcribe);
        assert_eq!(
            message,
            "model qwen is a chat model; /v1/audio/transcriptions and /v1/audio/translations are served by asr models"
        );
        assert_eq!(
            wrong_kind("whisper", ModelKind::Asr, Task::Embed),
            "model whisper is an asr model; /v1/embeddings is served by embedding models"
        );
    }
}
