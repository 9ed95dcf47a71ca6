//! Fuzz targets for the request bodies of `/v1`: OpenAI's chat and
//! completions, Anthropic's messages and the Responses API, each read,
//! translated and validated as the API does before a model sees it.
//!
//! What must hold for any body: no panic, and every refusal is the
//! client's fault (a 4xx), never a 500. A translation that produces a chat
//! request the API cannot read back would be a 500, so it fails the target.
//! `cargo test` replays each corpus (`tests/__fuzz__/TARGET/corpus`) and
//! runs random bodies for a second; `scripts/fuzz.sh` runs them longer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use greenthread_protocol::ApiResult;
use greenthread_protocol::anthropic::translate::to_openai;
use greenthread_protocol::anthropic::types::MessagesRequest;
use greenthread_protocol::json::parse;
use greenthread_protocol::openai::types::{ChatCompletionRequest, CompletionRequest};
use greenthread_protocol::openai::validate::{self, Rules};
use greenthread_protocol::responses::types::ResponsesRequest;
use greenthread_protocol::responses::{input, translate};
use serde_json::Value;

/// The rules the API validates with (`Limits::rules`): llguidance's own
/// check decides which grammars a request may ask for.
fn rules() -> Rules<'static> {
    Rules { max_choices: 8, enforceable: &greenthread_node_runtime::constraint::check }
}

/// Fails the target on a panic-free refusal that would still be a 5xx.
fn refused_by_the_client<T>(result: ApiResult<T>) {
    if let Err(e) = result {
        assert!(e.status().is_client_error(), "a body got {}: {e:?}", e.status());
        let body = e.body();
        assert!(body["error"]["message"].is_string(), "the error lacks OpenAI's shape: {body}");
    }
}

/// A translated body read back as the chat request it must be.
fn read_back(translated: Value) -> ChatCompletionRequest {
    match serde_json::from_value(translated.clone()) {
        Ok(chat) => chat,
        Err(e) => panic!("the translation is not a chat request ({e}): {translated}"),
    }
}

fn openai_chat_body(body: &[u8]) -> ApiResult<()> {
    validate::chat(parse::<ChatCompletionRequest>(body)?, &rules()).map(drop)
}

fn openai_completion_body(body: &[u8]) -> ApiResult<()> {
    validate::completion(parse::<CompletionRequest>(body)?, &rules()).map(drop)
}

fn anthropic_messages_body(body: &[u8]) -> ApiResult<()> {
    let req = parse::<MessagesRequest>(body)?;
    let chat = read_back(to_openai(&req, "fuzzed")?);
    validate::chat(chat, &rules()).map(drop)
}

fn responses_body(body: &[u8]) -> ApiResult<()> {
    let req = parse::<ResponsesRequest>(body)?;
    let items = input::items(req.input.as_ref())?;
    let chat = read_back(translate::to_chat(&req, &items, "fuzzed")?);
    let _ = translate::echo(&req);
    validate::chat(chat, &rules()).map(drop)
}

#[test]
fn openai_chat() {
    bolero::check!().for_each(|body: &[u8]| refused_by_the_client(openai_chat_body(body)));
}

#[test]
fn openai_completion() {
    bolero::check!().for_each(|body: &[u8]| refused_by_the_client(openai_completion_body(body)));
}

#[test]
fn anthropic_messages() {
    bolero::check!().for_each(|body: &[u8]| refused_by_the_client(anthropic_messages_body(body)));
}

#[test]
fn responses() {
    bolero::check!().for_each(|body: &[u8]| refused_by_the_client(responses_body(body)));
}

/// A target's path from body to validated request.
type Target = fn(&[u8]) -> ApiResult<()>;

/// Every seed is a request the API accepts: mutation starts from bodies
/// that reach the end of validation.
#[test]
fn every_seed_is_accepted() {
    let targets: [(&str, Target); 4] = [
        ("openai_chat", openai_chat_body),
        ("openai_completion", openai_completion_body),
        ("anthropic_messages", anthropic_messages_body),
        ("responses", responses_body),
    ];
    for (target, accepts) in targets {
        let corpus =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/__fuzz__").join(target).join("corpus");
        let mut seeds = 0;
        for entry in std::fs::read_dir(&corpus).unwrap() {
            let path = entry.unwrap().path();
            if let Err(e) = accepts(&std::fs::read(&path).unwrap()) {
                panic!("{} is refused: {e:?}", path.display());
            }
            seeds += 1;
        }
        assert!(seeds >= 2, "{target} has {seeds} seeds");
    }
}
