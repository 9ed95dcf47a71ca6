//! Fuzz targets for what the API reads from outside besides the chat
//! bodies (those are `greenthread-protocol`'s): the desired-state document,
//! the embeddings, rerank and speech bodies, the transcription form, and
//! API keys.
//!
//! `cargo test` replays each corpus (`src/__fuzz__/fuzz__TARGET/corpus`)
//! and runs random inputs for a second; `scripts/fuzz.sh` runs them longer.
//! They are unit tests rather than a `tests/` file because a package's
//! integration tests make cargo build its binary too, and built with
//! libFuzzer's instrumentation but without libFuzzer, the binary cannot link.

#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use crate::config::{Config, to_json};
use crate::openai::{audio, embeddings, rerank, speech};
use axum::http::{HeaderMap, HeaderValue, header};
use bytes::Bytes;
use greenthread_core::desired::{self, StateDoc};
use greenthread_protocol::ApiResult;
use greenthread_protocol::json::parse;
use greenthread_store::auth::KeyService;
use greenthread_store::{Store, SystemClock};

/// Fails the target on a refusal that would be a 5xx.
fn refused_by_the_client<T>(result: ApiResult<T>) {
    if let Err(e) = result {
        assert!(e.status().is_client_error(), "an input got {}: {e:?}", e.status());
    }
}

/// A desired-state document (`greenthread serve --config`, `greenthread
/// plan/apply`). What a document that parses must also do: validate or be
/// refused, plan from nothing, plan nothing against itself, and come back
/// unchanged through its JSON form (what `plan` and `apply` send).
#[test]
fn desired_state() {
    bolero::check!().for_each(|bytes: &[u8]| {
        let Ok(text) = std::str::from_utf8(bytes) else { return };
        let Ok(config) = Config::parse(text, Path::new("/models")) else { return };
        let state = config.state;
        if desired::validate(&state, &[]).is_err() {
            return;
        }
        let _ = desired::plan(&StateDoc::default(), &state);
        let again = desired::plan(&state, &state);
        assert!(again.is_empty(), "a state planned against itself changes {again:?}");
        let json = to_json(&state);
        let back = Config::from_json(&json).unwrap_or_else(|e| panic!("its JSON form is refused ({e}): {json}"));
        assert_eq!(back.state.sorted(), state.sorted(), "the JSON form changed the state");
    });
}

#[test]
fn embeddings_body() {
    bolero::check!().for_each(|body: &[u8]| {
        refused_by_the_client(parse::<embeddings::EmbeddingRequest>(body).and_then(embeddings::validate));
    });
}

#[test]
fn speech_body() {
    bolero::check!().for_each(|body: &[u8]| {
        refused_by_the_client(parse::<speech::SpeechRequest>(body).and_then(|req| speech::validate(&req)));
    });
}

/// `/v1/rerank` and `/v1/score` (the input picks which).
#[test]
fn rerank_body() {
    bolero::check!().for_each(|bytes: &[u8]| {
        let Some((&which, body)) = bytes.split_first() else { return };
        if which % 2 == 0 {
            refused_by_the_client(parse::<rerank::RerankRequest>(body).and_then(rerank::validate));
        } else {
            refused_by_the_client(parse::<rerank::ScoreRequest>(body).and_then(rerank::validate_score));
        }
    });
}

/// A transcription request's multipart form: the input's first line is the
/// boundary the client declares, the rest the body.
#[test]
fn transcription_form() {
    let runtime = std::panic::AssertUnwindSafe(tokio::runtime::Builder::new_current_thread().build().unwrap());
    bolero::check!().for_each(|bytes: &[u8]| {
        let (boundary, body) = match bytes.iter().position(|&b| b == b'\n') {
            Some(at) => (&bytes[..at], &bytes[at + 1..]),
            None => (&b""[..], bytes),
        };
        let mut content_type = b"multipart/form-data; boundary=".to_vec();
        content_type.extend_from_slice(boundary);
        let Ok(content_type) = HeaderValue::from_bytes(&content_type) else { return };
        let headers = HeaderMap::from_iter([(header::CONTENT_TYPE, content_type)]);
        refused_by_the_client(runtime.block_on(audio::read(&headers, Bytes::copy_from_slice(body))));
    });
}

/// A bearer secret against a real key store (SQLite) holding one issued
/// key: nothing but that key's own secret authenticates, and no secret
/// makes the check fail in any other way than refusing it.
#[test]
fn api_key() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("keys.db").display());
    let (keys, issued) = runtime.block_on(async {
        let store = Store::open(&url, Arc::new(SystemClock)).await.unwrap();
        let keys = KeyService::new(store).await.unwrap();
        let issued = keys.bootstrap_admin(None).await.unwrap().unwrap();
        (keys, issued)
    });
    // A panic ends the target: nothing observes the store after one.
    let (runtime, keys) = (std::panic::AssertUnwindSafe(runtime), std::panic::AssertUnwindSafe(keys));
    bolero::check!().for_each(|bytes: &[u8]| {
        let Ok(secret) = std::str::from_utf8(bytes) else { return };
        let result = runtime.block_on(keys.authenticate(secret));
        assert_eq!(result.is_ok(), secret == issued, "{secret:?} was {result:?}");
    });
}

/// The seeds of each target, read from its corpus.
fn seeds(target: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let corpus =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/__fuzz__").join(format!("fuzz__{target}")).join("corpus");
    let seeds: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    assert!(!seeds.is_empty(), "{} is empty", corpus.display());
    seeds
}

/// Every seed is an input the API accepts: mutation starts from inputs that
/// go all the way through.
#[test]
fn every_seed_is_accepted() {
    for (path, bytes) in seeds("desired_state") {
        let config = Config::parse(std::str::from_utf8(&bytes).unwrap(), Path::new("/models"));
        let state = config.unwrap_or_else(|e| panic!("{}: {e}", path.display())).state;
        desired::validate(&state, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    for (path, bytes) in seeds("embeddings_body") {
        assert!(
            parse::<embeddings::EmbeddingRequest>(&bytes).and_then(embeddings::validate).is_ok(),
            "{}",
            path.display()
        );
    }
    for (path, bytes) in seeds("speech_body") {
        let valid = parse::<speech::SpeechRequest>(&bytes).and_then(|req| speech::validate(&req));
        assert!(valid.is_ok(), "{}: {:?}", path.display(), valid.err());
    }
    for (path, bytes) in seeds("rerank_body") {
        let accepted = match bytes.split_first() {
            Some((which, body)) if which % 2 == 0 => parse(body).and_then(rerank::validate).is_ok(),
            Some((_, body)) => parse(body).and_then(rerank::validate_score).is_ok(),
            None => false,
        };
        assert!(accepted, "{}", path.display());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for (path, bytes) in seeds("transcription_form") {
        let at = bytes.iter().position(|&b| b == b'\n').unwrap();
        let content_type = format!("multipart/form-data; boundary={}", std::str::from_utf8(&bytes[..at]).unwrap());
        let headers = HeaderMap::from_iter([(header::CONTENT_TYPE, HeaderValue::from_str(&content_type).unwrap())]);
        let read = runtime.block_on(audio::read(&headers, Bytes::copy_from_slice(&bytes[at + 1..])));
        assert!(read.is_ok(), "{}: {:?}", path.display(), read.err());
    }
}
