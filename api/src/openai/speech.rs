//! `POST /v1/audio/speech` as OpenAI defines it (`model`, `input`, `voice`,
//! `response_format`, `speed`, `stream_format`): the audio goes out a
//! sentence at a time as it is synthesized, as a WAV or raw PCM stream, as
//! FLAC once whole, or as `speech.audio.delta` events. `GET /v1/audio/voices`
//! lists a model's voices in the shape Open WebUI and Kokoro-FastAPI read.

mod encode;

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use greenthread_node_runtime::ModelInstance;
use greenthread_node_runtime::engine::{SpeakOptions, Speaker};
use greenthread_scheduler::Lease;
use serde::Deserialize;
use serde_json::json;

pub use self::encode::AudioFormat;
use self::encode::Encoder;
use crate::catalog::CatalogEntry;
use crate::engine_errors::from_engine;
use crate::gate::Caller;
use crate::http::json::ApiJson;
use crate::inference::Route;
use crate::state::AppState;
use greenthread_protocol::error::{ApiError, ApiResult};

/// Most characters one request may speak (OpenAI's limit).
const MAX_INPUT_CHARS: usize = 4096;
/// Sentences of audio synthesized ahead of a slow reader.
const AHEAD: usize = 4;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeechRequest {
    pub model: Option<String>,
    pub input: String,
    pub voice: Option<String>,
    pub response_format: Option<String>,
    pub speed: Option<f32>,
    /// `audio` (the default) or `sse`.
    pub stream_format: Option<String>,
    /// Steers voices that take instructions; these do not.
    pub instructions: Option<String>,
}

/// A validated request.
#[derive(Debug, Clone)]
pub struct Valid {
    input: String,
    options: SpeakOptions,
    format: AudioFormat,
    events: bool,
}

/// Validates a speech request.
///
/// # Errors
/// [`ApiError::InvalidParam`] naming the field, [`ApiError::Unsupported`] for
/// options these voices do not take.
pub fn validate(req: &SpeechRequest) -> ApiResult<Valid> {
    if req.input.trim().is_empty() {
        return Err(ApiError::invalid("input", "input is empty"));
    }
    if req.input.contains('\0') {
        return Err(ApiError::invalid("input", "input holds a NUL character"));
    }
    let chars = req.input.chars().count();
    if chars > MAX_INPUT_CHARS {
        return Err(ApiError::invalid("input", format!("input has {chars} characters; at most {MAX_INPUT_CHARS}")));
    }
    let voice = req.voice.clone().filter(|v| !v.is_empty()).ok_or_else(|| {
        ApiError::invalid("voice", "Missing required parameter: 'voice' (GET /v1/audio/voices lists them)")
    })?;
    let speed = req.speed.unwrap_or(1.0);
    if !(0.25..=4.0).contains(&speed) {
        return Err(ApiError::invalid("speed", "speed must be between 0.25 and 4.0"));
    }
    if req.instructions.as_deref().is_some_and(|i| !i.trim().is_empty()) {
        return Err(ApiError::Unsupported {
            param: "instructions",
            message: "this model's voices take no instructions".into(),
        });
    }
    let events = match req.stream_format.as_deref() {
        None | Some("audio") => false,
        Some("sse") => true,
        Some(other) => {
            return Err(ApiError::invalid("stream_format", format!("stream_format is audio or sse, not {other:?}")));
        }
    };
    let format = AudioFormat::parse(req.response_format.as_deref())?;
    Ok(Valid { input: req.input.clone(), options: SpeakOptions { voice, speed }, format, events })
}

pub async fn unified(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req, raw): ApiJson<SpeechRequest>,
) -> ApiResult<Response> {
    let model = state.inference.model_for_body(&caller, req.model.as_deref())?;
    run(&state, &caller, model, req, raw).await
}

pub async fn per_model(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req, raw): ApiJson<SpeechRequest>,
) -> ApiResult<Response> {
    let model = state.inference.model_for_path(&caller, &name)?;
    run(&state, &caller, model, req, raw).await
}

async fn run(
    state: &AppState,
    caller: &Caller,
    model: Arc<CatalogEntry>,
    req: SpeechRequest,
    raw: Bytes,
) -> ApiResult<Response> {
    state
        .inference
        .metered(caller, &model, async {
            let valid = validate(&req)?;
            state
                .inference
                .dispatch(caller, &model, Route::Speech, raw, move |instance, lease| speak(instance, lease, valid))
                .await
        })
        .await
}

/// What the synthesis sends on: audio, or how it ended.
enum Piece {
    Audio(Vec<f32>),
    Failed(ApiError),
}

/// Speaks on a model in this process. The first sentence is awaited before
/// the answer's head goes out, so a request the model refuses gets its error
/// as a status, not as a broken stream.
async fn speak(instance: Arc<dyn ModelInstance>, lease: Option<Lease>, valid: Valid) -> ApiResult<Response> {
    let speaker = instance.speaker().ok_or_else(|| from_engine(wrong_kind(instance.as_ref())))?;
    check_voice(&speaker, &valid.options.voice)?;
    let characters = valid.input.chars().count();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Piece>(AHEAD);
    let Valid { input, options, format, events } = valid;
    tokio::task::spawn_blocking(move || {
        let result =
            instance.speak(&input, &options, &mut |audio| tx.blocking_send(Piece::Audio(audio.to_vec())).is_ok());
        if let Err(e) = result {
            let _ = tx.blocking_send(Piece::Failed(from_engine(e)));
        }
    });
    let first = match rx.recv().await {
        Some(Piece::Audio(audio)) => audio,
        Some(Piece::Failed(e)) => return Err(e),
        None => return Err(ApiError::Internal("synthesis ended without audio".into())),
    };
    let encoder = Encoder::new(format, speaker.sample_rate);
    let response =
        if events { sse(encoder, first, rx, lease, characters) } else { streamed(encoder, first, rx, lease) };
    let response = crate::usage::Units::characters(characters).on(response);
    Ok(crate::inference::metering::counted(response, 0, 0))
}

fn wrong_kind(instance: &dyn ModelInstance) -> greenthread_node_runtime::Error {
    let kind = instance.info().kind;
    greenthread_node_runtime::Error::WrongKind(format!("this {kind} model does not serve /v1/audio/speech"))
}

fn check_voice(speaker: &Speaker, voice: &str) -> ApiResult<()> {
    if speaker.voices.iter().any(|v| v.id == voice) {
        return Ok(());
    }
    let known: Vec<&str> = speaker.voices.iter().map(|v| v.id.as_str()).collect();
    Err(ApiError::invalid("voice", format!("unknown voice {voice:?}; this model's voices: {}", known.join(", "))))
}

/// The audio as one body, encoded as it comes.
fn streamed(
    mut encoder: Encoder,
    first: Vec<f32>,
    mut rx: tokio::sync::mpsc::Receiver<Piece>,
    lease: Option<Lease>,
) -> Response {
    let content_type = encoder.content_type();
    let body = async_stream::stream! {
        let _lease = lease;
        let head = encoder.push(&first);
        if !head.is_empty() {
            yield Ok::<Bytes, std::io::Error>(head);
        }
        while let Some(piece) = rx.recv().await {
            match piece {
                Piece::Audio(audio) => {
                    let bytes = encoder.push(&audio);
                    if !bytes.is_empty() {
                        yield Ok(bytes);
                    }
                }
                // The head has gone out: breaking the body is the only way left to say it failed.
                Piece::Failed(e) => {
                    yield Err(std::io::Error::other(e.to_string()));
                    return;
                }
            }
        }
        match finish(encoder).await {
            Ok(tail) if !tail.is_empty() => yield Ok(tail),
            Ok(_) => {}
            Err(e) => yield Err(std::io::Error::other(e)),
        }
    };
    let mut response = Response::new(Body::from_stream(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The audio as `speech.audio.delta` events (base64), then `speech.audio.done`.
fn sse(
    mut encoder: Encoder,
    first: Vec<f32>,
    mut rx: tokio::sync::mpsc::Receiver<Piece>,
    lease: Option<Lease>,
    characters: usize,
) -> Response {
    let delta = |bytes: &[u8]| {
        let audio = base64::engine::general_purpose::STANDARD.encode(bytes);
        Event::default().data(json!({"type": "speech.audio.delta", "audio": audio}).to_string())
    };
    let events = async_stream::stream! {
        let _lease = lease;
        let head = encoder.push(&first);
        if !head.is_empty() {
            yield Ok::<_, std::convert::Infallible>(delta(&head));
        }
        while let Some(piece) = rx.recv().await {
            match piece {
                Piece::Audio(audio) => {
                    let bytes = encoder.push(&audio);
                    if !bytes.is_empty() {
                        yield Ok(delta(&bytes));
                    }
                }
                Piece::Failed(e) => {
                    yield Ok(Event::default().data(e.body().to_string()));
                    return;
                }
            }
        }
        match finish(encoder).await {
            Ok(tail) => {
                if !tail.is_empty() {
                    yield Ok(delta(&tail));
                }
                let usage = json!({"input_tokens": characters, "output_tokens": 0, "total_tokens": characters});
                yield Ok(Event::default().data(json!({"type": "speech.audio.done", "usage": usage}).to_string()));
                // What the gateway's meter reads: no tokens (the characters travel as units).
                yield Ok(crate::inference::metering::usage_comment(0, 0));
            }
            Err(e) => yield Ok(Event::default().data(ApiError::Internal(e).body().to_string())),
        }
    };
    Sse::new(events).into_response()
}

/// The encoder's last bytes (a whole FLAC file: seconds of work for long
/// audio), made off the async workers.
async fn finish(mut encoder: Encoder) -> Result<Bytes, String> {
    tokio::task::spawn_blocking(move || encoder.finish()).await.map_err(|e| e.to_string())?
}

#[derive(Debug, Deserialize)]
pub struct VoicesQuery {
    pub model: Option<String>,
}

pub async fn voices_unified(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<VoicesQuery>,
) -> ApiResult<Response> {
    let model = state.inference.model_for_body(&caller, query.model.as_deref())?;
    voices(&state, &caller, model).await
}

pub async fn voices_per_model(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let model = state.inference.model_for_path(&caller, &name)?;
    voices(&state, &caller, model).await
}

/// A gateway forwards a voices request to a node as a POST with the model in the body.
pub async fn voices_forwarded(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(query, _): ApiJson<VoicesQuery>,
) -> ApiResult<Response> {
    let model = state.inference.model_for_body(&caller, query.model.as_deref())?;
    voices(&state, &caller, model).await
}

/// The voices of a model this server holds, read without waking it; of
/// another node's model, from that node.
async fn voices(state: &AppState, caller: &Caller, model: Arc<CatalogEntry>) -> ApiResult<Response> {
    if let Some(instance) = state.node.as_ref().and_then(|n| n.instance(&model.spec.name)) {
        return listed(instance.as_ref());
    }
    let raw = Bytes::from(json!({"model": model.spec.name.to_string()}).to_string());
    state
        .inference
        .dispatch(caller, &model, Route::Voices, raw, |instance, _lease| async move { listed(instance.as_ref()) })
        .await
}

fn listed(instance: &dyn ModelInstance) -> ApiResult<Response> {
    let speaker = instance.speaker().ok_or_else(|| from_engine(wrong_kind(instance)))?;
    let voices: Vec<_> = speaker
        .voices
        .iter()
        .map(|v| json!({"id": v.id, "name": v.id, "language": v.language, "sample_rate": speaker.sample_rate}))
        .collect();
    Ok(Json(json!({"voices": voices})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> SpeechRequest {
        greenthread_protocol::json::parse(body.as_bytes()).unwrap()
    }

    fn param(body: &str) -> String {
        match validate(&request(body)) {
            Err(ApiError::InvalidParam { param, .. }) => param,
            Err(ApiError::Unsupported { param, .. }) => param.to_owned(),
            other => panic!("expected a parameter error, got {other:?}"),
        }
    }

    #[test]
    fn fields_are_validated_by_name() {
        let v = validate(&request(r#"{"model": "m", "input": "Hi.", "voice": "joe", "speed": 2}"#)).unwrap();
        assert_eq!((v.options.speed, v.format, v.events), (2.0, AudioFormat::Wav, false));
        assert_eq!(param(r#"{"input": " ", "voice": "joe"}"#), "input");
        assert_eq!(param(r#"{"input": "Hi."}"#), "voice");
        assert_eq!(param(r#"{"input": "Hi\u0000.", "voice": "joe"}"#), "input");
        assert_eq!(param(r#"{"input": "Hi.", "voice": "joe", "speed": 5}"#), "speed");
        assert_eq!(param(r#"{"input": "Hi.", "voice": "joe", "response_format": "mp3"}"#), "response_format");
        assert_eq!(param(r#"{"input": "Hi.", "voice": "joe", "stream_format": "chunks"}"#), "stream_format");
        assert_eq!(param(r#"{"input": "Hi.", "voice": "joe", "instructions": "cheerful"}"#), "instructions");
        let long = format!(r#"{{"input": "{}", "voice": "joe"}}"#, "a".repeat(MAX_INPUT_CHARS + 1));
        assert_eq!(param(&long), "input");
    }

    #[test]
    fn an_unknown_voice_names_the_known_ones() {
        let speaker = Speaker {
            sample_rate: 22050,
            voices: vec![greenthread_node_runtime::engine::Voice { id: "joe".into(), language: None }],
        };
        assert!(check_voice(&speaker, "joe").is_ok());
        let err = check_voice(&speaker, "alloy").unwrap_err();
        assert!(err.to_string().contains("joe"), "{err}");
    }
}
