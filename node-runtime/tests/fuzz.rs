//! Fuzz targets for what a node reads from outside: model files, chat
//! templates with the messages and tools a client sends, output grammars
//! compiled against a vocabulary, and uploaded audio.
//!
//! `cargo test` replays each target's corpus (`tests/__fuzz__/TARGET/corpus`,
//! and `crashes` where a run left one) and then feeds it random inputs for a
//! second; `scripts/fuzz.sh SECONDS` runs every target longer, with
//! libFuzzer's coverage guidance when asked (docs/RELIABILITY.md). Whatever the
//! input, a target must return (an error is fine) and never panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use greenthread_core::grammar::OutputGrammar;
use greenthread_core::{ArtifactUri, ChatMessage, ModelName, ModelSpec, Role, ToolCall, ToolCallFunction};
use greenthread_node_runtime::WeightSource;
use greenthread_node_runtime::asr::audio;
use greenthread_node_runtime::builtin::BuiltinEngine;
use greenthread_node_runtime::chat_template::ChatTemplate;
use greenthread_node_runtime::constraint::{self, Grammars};
use greenthread_node_runtime::fixtures::vocab::bpe_vocab;
use greenthread_node_runtime::node::open_model;
use greenthread_node_runtime::tokenizer::Tokenizer;
use serde::Deserialize;
use serde_json::Value;

/// A fuzzed model is woken only where a node with this much device memory
/// would admit it: a node refuses models larger than its budget.
const WAKE_BUDGET: usize = 256 << 20;

/// A model file as a node receives it from an artifact store: GGUF, or a
/// packed Hugging Face directory (safetensors with its small files in the
/// header). Opened asleep, then woken where its footprint fits a node,
/// then asked for a token's logits.
#[test]
fn model_file() {
    let engine = BuiltinEngine::cpu();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model");
    let spec = ModelSpec::new(ModelName::parse("fuzzed").unwrap(), ArtifactUri::File(path.clone()));
    bolero::check!().for_each(|bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        let Ok(model) = open_model(&engine, &spec, &path) else { return };
        if model.footprint() <= WAKE_BUDGET && model.wake(WeightSource::File(&path)).is_ok() {
            model.sleep().unwrap();
        }
    });
}

/// The seeds open and wake: mutation starts from files that go all the way.
/// Inputs named `regression-*` are failures fuzzing found: each is refused
/// with an error (before its fix, it panicked).
#[test]
fn every_model_file_seed_opens_and_wakes_and_every_regression_is_refused() {
    let engine = BuiltinEngine::cpu();
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/__fuzz__/model_file/corpus");
    let (mut seeds, mut regressions) = (0, 0);
    for entry in std::fs::read_dir(corpus).unwrap() {
        let path = entry.unwrap().path();
        let spec = ModelSpec::new(ModelName::parse("seed").unwrap(), ArtifactUri::File(path.clone()));
        let opened = open_model(&engine, &spec, &path);
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("regression-")) {
            assert!(opened.is_err(), "{} opened", path.display());
            regressions += 1;
            continue;
        }
        let model = opened.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        model.wake(WeightSource::File(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        seeds += 1;
    }
    assert!(seeds >= 4 && regressions >= 1, "the corpus holds {seeds} model files and {regressions} regressions");
}

/// A chat template (a model file carries its own, a spec may replace it)
/// rendered with the messages and tools a client sent.
#[derive(Deserialize)]
struct TemplateInput {
    template: String,
    #[serde(default)]
    messages: Vec<MessageInput>,
    tools: Option<Value>,
    #[serde(default)]
    add_generation_prompt: bool,
}

/// A message as validation hands it to the template: any text, any tool
/// calls with any arguments.
#[derive(Deserialize)]
struct MessageInput {
    role: String,
    content: Option<String>,
    name: Option<String>,
    #[serde(default)]
    tool_calls: Vec<CallInput>,
    tool_call_id: Option<String>,
}

#[derive(Deserialize)]
struct CallInput {
    id: String,
    function: FunctionInput,
}

#[derive(Deserialize)]
struct FunctionInput {
    name: String,
    arguments: Value,
}

impl MessageInput {
    fn message(self) -> Option<ChatMessage> {
        let tool_calls = self
            .tool_calls
            .into_iter()
            .map(|c| ToolCall {
                id: c.id,
                kind: "function",
                function: ToolCallFunction { name: c.function.name, arguments: c.function.arguments },
            })
            .collect();
        Some(ChatMessage {
            role: Role::parse(&self.role)?,
            content: self.content,
            name: self.name,
            tool_calls,
            tool_call_id: self.tool_call_id,
        })
    }
}

#[test]
fn chat_template() {
    bolero::check!().for_each(|bytes: &[u8]| {
        let Ok(input) = serde_json::from_slice::<TemplateInput>(bytes) else { return };
        let Some(messages) = input.messages.into_iter().map(MessageInput::message).collect::<Option<Vec<_>>>() else {
            return;
        };
        let Ok(template) = ChatTemplate::new(&input.template, "<s>", "</s>") else { return };
        let _ = template.render(&messages, input.tools.as_ref(), input.add_generation_prompt);
    });
}

/// What a client may ask its output to match: a JSON Schema, a Lark grammar
/// or a regular expression.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum GrammarInput {
    JsonSchema(Value),
    Lark(String),
    Regex(String),
}

/// Compiles the grammar as a request would (checked, then compiled against
/// a model's vocabulary) and walks it for a few tokens.
#[test]
fn output_grammar() {
    let tokenizer = Tokenizer::new(bpe_vocab()).unwrap();
    let size = tokenizer.vocab_size();
    // Compiling only reads the factory; a panic ends the target anyway.
    let grammars = std::panic::AssertUnwindSafe(Grammars::for_vocabulary(&tokenizer, size).unwrap());
    bolero::check!().for_each(|bytes: &[u8]| {
        let grammar = match serde_json::from_slice::<GrammarInput>(bytes) {
            Ok(GrammarInput::JsonSchema(schema)) => OutputGrammar::json_schema(&schema),
            Ok(GrammarInput::Lark(text)) => OutputGrammar::lark(&text),
            Ok(GrammarInput::Regex(text)) => OutputGrammar::regex(&text),
            Err(_) => return,
        };
        let Ok(grammar) = grammar else { return };
        if constraint::check(&grammar).is_err() {
            return;
        }
        let Ok(mut walk) = grammars.constraint(&grammar) else { return };
        for _ in 0..8 {
            let Ok(allowed) = walk.allowed() else { return };
            let Some(token) = (0..size as u32).find(|&t| allowed.is_allowed(t)) else { return };
            if token == walk.end_token() || walk.advance(token).is_err() {
                return;
            }
        }
    });
}

/// An uploaded audio file (a transcription request's `file`), decoded to
/// 16 kHz mono; the first byte picks the file name's extension, a hint the
/// client controls too.
#[test]
fn audio_file() {
    let extensions: BTreeMap<u8, &str> =
        [(0, "wav"), (1, "mp3"), (2, "flac"), (3, "ogg"), (4, "webm")].into_iter().collect();
    bolero::check!().for_each(|bytes: &[u8]| {
        let Some((&hint, file)) = bytes.split_first() else { return };
        let _ = audio::decode(file.to_vec(), extensions.get(&(hint % 6)).copied());
    });
}
