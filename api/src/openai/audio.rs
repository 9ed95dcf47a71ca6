//! `POST /v1/audio/transcriptions` and `/v1/audio/translations` as OpenAI
//! defines them: a multipart form (`file`, `model`, `language`, `prompt`,
//! `temperature`, `response_format`, `stream`), answered as JSON, text,
//! SRT, WebVTT or verbose JSON with segments, or streamed as
//! `transcript.text.delta` events. A gateway forwards the form to the node
//! as JSON (the audio in base64); the node decodes the audio and runs the
//! model.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use greenthread_node_runtime::ModelInstance;
use greenthread_node_runtime::asr::{Segment, TranscribeOptions, Transcript, audio, languages};
use greenthread_scheduler::Lease;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::catalog::CatalogEntry;
use crate::engine_errors::from_engine;
use crate::gate::Caller;
use crate::inference::Route;
use crate::state::AppState;
use greenthread_protocol::error::{ApiError, ApiResult};

/// How the transcript comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Json,
    Text,
    Srt,
    Vtt,
    VerboseJson,
}

impl Format {
    fn parse(text: &str) -> ApiResult<Self> {
        match text {
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            "srt" => Ok(Self::Srt),
            "vtt" => Ok(Self::Vtt),
            "verbose_json" => Ok(Self::VerboseJson),
            other => Err(ApiError::invalid(
                "response_format",
                format!("unknown response_format {other:?}; one of json, text, srt, verbose_json, vtt"),
            )),
        }
    }
}

/// A transcription request as the node gets it from a gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpeechRequest {
    pub model: Option<String>,
    /// The audio file, in base64.
    pub file: String,
    pub filename: Option<String>,
    pub language: Option<String>,
    pub prompt: Option<String>,
    pub temperature: f32,
    pub response_format: Format,
    pub stream: bool,
}

/// Reads the request: a multipart form from a client, or JSON from a gateway.
///
/// # Errors
/// [`ApiError::InvalidParam`] naming what is wrong with the form or the JSON.
pub async fn read(headers: &HeaderMap, body: Bytes) -> ApiResult<SpeechRequest> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.starts_with("application/json") {
        return greenthread_protocol::json::parse(&body);
    }
    if !content_type.starts_with("multipart/form-data") {
        return Err(ApiError::invalid("file", "send the audio as multipart/form-data with a `file` field"));
    }
    let request = Request::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::invalid("file", format!("the form could not be read: {e}")))?;
    let mut fields = Fields::default();
    while let Some(field) =
        form.next_field().await.map_err(|e| ApiError::invalid("file", format!("the form could not be read: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            fields.filename = field.file_name().map(str::to_owned);
            let bytes = field.bytes().await.map_err(|e| ApiError::invalid("file", e.to_string()))?;
            fields.file = Some(bytes);
            continue;
        }
        let text = field.text().await.map_err(|e| ApiError::invalid(name.clone(), e.to_string()))?;
        fields.set(&name, text)?;
    }
    fields.finish()
}

/// The form's fields as they arrive.
#[derive(Default)]
struct Fields {
    file: Option<Bytes>,
    filename: Option<String>,
    model: Option<String>,
    language: Option<String>,
    prompt: Option<String>,
    temperature: Option<String>,
    response_format: Option<String>,
    stream: Option<String>,
}

impl Fields {
    fn set(&mut self, name: &str, text: String) -> ApiResult<()> {
        match name {
            "model" => self.model = Some(text),
            "language" => self.language = Some(text),
            "prompt" => self.prompt = Some(text),
            "temperature" => self.temperature = Some(text),
            "response_format" => self.response_format = Some(text),
            "stream" => self.stream = Some(text),
            "timestamp_granularities[]" | "timestamp_granularities" => {
                if text != "segment" {
                    return Err(ApiError::Unsupported {
                        param: "timestamp_granularities",
                        message: format!("timestamp granularity {text:?} is not available; segment is"),
                    });
                }
            }
            // Options of other models that change nothing here.
            "include[]" | "chunking_strategy" | "known_speaker_names[]" | "known_speaker_references[]" => {}
            other => return Err(ApiError::invalid(other.to_owned(), format!("unknown field {other:?}"))),
        }
        Ok(())
    }

    fn finish(self) -> ApiResult<SpeechRequest> {
        let file = self.file.ok_or_else(|| ApiError::invalid("file", "the form has no `file`"))?;
        let temperature = match self.temperature.as_deref() {
            None | Some("") => 0.0,
            Some(t) => {
                t.parse::<f32>().map_err(|_| ApiError::invalid("temperature", format!("{t:?} is not a number")))?
            }
        };
        let stream = match self.stream.as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ApiError::invalid("stream", format!("stream must be true or false, not {other:?}")));
            }
        };
        Ok(SpeechRequest {
            model: self.model,
            file: base64::engine::general_purpose::STANDARD.encode(file),
            filename: self.filename,
            language: self.language.filter(|l| !l.is_empty()),
            prompt: self.prompt.filter(|p| !p.is_empty()),
            temperature,
            response_format: Format::parse(self.response_format.as_deref().unwrap_or("json"))?,
            stream,
        })
    }
}

/// A validated request, the audio still encoded.
struct Valid {
    file: Vec<u8>,
    extension: Option<String>,
    options: TranscribeOptions,
    format: Format,
    stream: bool,
}

fn validate(req: &SpeechRequest, translate: bool) -> ApiResult<Valid> {
    if !(0.0..=1.0).contains(&req.temperature) {
        return Err(ApiError::invalid("temperature", "temperature must be between 0 and 1"));
    }
    if let Some(language) = &req.language
        && !(2..=3).contains(&language.len())
    {
        return Err(ApiError::invalid("language", format!("{language:?} is not an ISO-639-1 language code")));
    }
    if req.stream && !matches!(req.response_format, Format::Json | Format::Text) {
        return Err(ApiError::invalid("stream", "stream is available with response_format json or text"));
    }
    let file = base64::engine::general_purpose::STANDARD
        .decode(&req.file)
        .map_err(|e| ApiError::invalid("file", format!("the file is not base64: {e}")))?;
    if file.is_empty() {
        return Err(ApiError::invalid("file", "the file is empty"));
    }
    let extension = req
        .filename
        .as_deref()
        .and_then(|name| std::path::Path::new(name).extension())
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let options = TranscribeOptions {
        language: req.language.clone().map(|l| l.to_ascii_lowercase()),
        translate,
        prompt: req.prompt.clone(),
        temperature: req.temperature,
    };
    Ok(Valid { file, extension, options, format: req.response_format, stream: req.stream })
}

pub async fn transcribe_unified(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    answer(&state, &caller, None, &headers, body, false).await
}

pub async fn transcribe_per_model(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    answer(&state, &caller, Some(&name), &headers, body, false).await
}

pub async fn translate_unified(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    answer(&state, &caller, None, &headers, body, true).await
}

pub async fn translate_per_model(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    answer(&state, &caller, Some(&name), &headers, body, true).await
}

/// Reads the request and runs it on the model its URL (`path_model`) or its form names.
async fn answer(
    state: &AppState,
    caller: &Caller,
    path_model: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
    translate: bool,
) -> ApiResult<Response> {
    let req = read(headers, body).await?;
    let model = match path_model {
        Some(name) => state.inference.model_for_path(caller, name)?,
        None => state.inference.model_for_body(caller, req.model.as_deref())?,
    };
    run(state, caller, model, req, translate).await
}

async fn run(
    state: &AppState,
    caller: &Caller,
    model: Arc<CatalogEntry>,
    req: SpeechRequest,
    translate: bool,
) -> ApiResult<Response> {
    state
        .inference
        .metered(caller, &model, async {
            let valid = validate(&req, translate)?;
            let raw = Bytes::from(serde_json::to_vec(&req).map_err(|e| ApiError::Internal(e.to_string()))?);
            let route = if translate { Route::Translations } else { Route::Transcriptions };
            state
                .inference
                .dispatch(caller, &model, route, raw, move |instance, lease| hear(instance, lease, valid, translate))
                .await
        })
        .await
}

/// Transcribes on a model in this process.
async fn hear(
    instance: Arc<dyn ModelInstance>,
    lease: Option<Lease>,
    valid: Valid,
    translate: bool,
) -> ApiResult<Response> {
    let Valid { file, extension, options, format, stream } = valid;
    let samples = tokio::task::spawn_blocking(move || audio::decode(file, extension.as_deref()))
        .await
        .map_err(|e| ApiError::Internal(format!("decoding audio failed: {e}")))?
        .map_err(|e| ApiError::invalid("file", e.to_string()))?;
    let heard = crate::usage::Units::audio_seconds(samples.len() as f64 / audio::SAMPLE_RATE as f64);
    if stream {
        return Ok(heard.on(streamed(instance, lease, samples, options)));
    }
    let transcript = tokio::task::spawn_blocking(move || instance.transcribe(&samples, &options, &mut |_| {}))
        .await
        .map_err(|e| ApiError::Internal(format!("transcription failed: {e}")))?
        .map_err(from_engine)?;
    drop(lease);
    let tokens: usize = transcript.segments.iter().map(|s| s.tokens.len()).sum();
    let response = match format {
        Format::Json => axum::Json(json!({"text": transcript.text, "usage": usage(&transcript)})).into_response(),
        Format::VerboseJson => axum::Json(verbose(&transcript, translate)).into_response(),
        Format::Text => plain(format!("{}\n", transcript.text), "text/plain; charset=utf-8"),
        Format::Srt => plain(subtitles(&transcript.segments, false), "text/plain; charset=utf-8"),
        Format::Vtt => plain(subtitles(&transcript.segments, true), "text/vtt; charset=utf-8"),
    };
    Ok(crate::inference::metering::counted(heard.on(response), 0, u32::try_from(tokens).unwrap_or(u32::MAX)))
}

/// OpenAI's usage of a transcription: the seconds of audio heard.
fn usage(transcript: &Transcript) -> Value {
    json!({"type": "duration", "seconds": transcript.duration.ceil() as u64})
}

fn plain(text: String, content_type: &'static str) -> Response {
    let mut response = Response::new(Body::from(text));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn verbose(transcript: &Transcript, translate: bool) -> Value {
    let segments: Vec<Value> = transcript
        .segments
        .iter()
        .map(|s| {
            json!({
                "id": s.id, "seek": (s.start * 100.0) as u64, "start": s.start, "end": s.end, "text": s.text,
                "tokens": s.tokens, "temperature": s.temperature, "avg_logprob": s.avg_logprob,
                "compression_ratio": compression_ratio(&s.text), "no_speech_prob": s.no_speech_prob,
            })
        })
        .collect();
    json!({
        "task": if translate { "translate" } else { "transcribe" },
        // OpenAI names the language ("english"); the code where Whisper's table has no name.
        "language": languages::name(&transcript.language).unwrap_or(&transcript.language),
        "duration": transcript.duration,
        "text": transcript.text,
        "segments": segments,
        "usage": usage(transcript),
    })
}

/// How much a segment's text repeats itself, as Whisper reports it: its
/// bytes over their zlib-compressed bytes (a loop compresses well).
fn compression_ratio(text: &str) -> f64 {
    use std::io::Write as _;
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let compressed = encoder.write_all(text.as_bytes()).and_then(|()| encoder.finish()).map_or(0, |c| c.len());
    if compressed == 0 { 0.0 } else { text.len() as f64 / compressed as f64 }
}

/// The segments as SRT (`00:00:01,000`) or WebVTT (`00:00:01.000`, after a `WEBVTT` header).
fn subtitles(segments: &[Segment], vtt: bool) -> String {
    let stamp = |seconds: f64| {
        let ms = (seconds * 1000.0).round() as u64;
        let (h, m, s, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
        if vtt { format!("{h:02}:{m:02}:{s:02}.{ms:03}") } else { format!("{h:02}:{m:02}:{s:02},{ms:03}") }
    };
    let mut out = if vtt { String::from("WEBVTT\n\n") } else { String::new() };
    for (i, s) in segments.iter().enumerate() {
        if !vtt {
            out.push_str(&format!("{}\n", i + 1));
        }
        out.push_str(&format!("{} --> {}\n{}\n\n", stamp(s.start), stamp(s.end), s.text.trim()));
    }
    out
}

/// The transcript as `transcript.text.delta` events, a segment at a time,
/// then `transcript.text.done`.
fn streamed(
    instance: Arc<dyn ModelInstance>,
    lease: Option<Lease>,
    samples: Vec<f32>,
    options: TranscribeOptions,
) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<String, Transcript>>();
    let run = tokio::task::spawn_blocking(move || {
        let sent = tx.clone();
        let result = instance.transcribe(&samples, &options, &mut |segment| {
            let _ = sent.send(Ok(segment.text.clone()));
        });
        if let Ok(transcript) = &result {
            let _ = tx.send(Err(transcript.clone()));
        }
        result.map(drop)
    });
    let events = async_stream::stream! {
        let _lease = lease;
        let mut tokens = 0u32;
        while let Some(item) = rx.recv().await {
            match item {
                Ok(delta) => {
                    let event = json!({"type": "transcript.text.delta", "delta": delta});
                    yield Ok::<_, std::convert::Infallible>(Event::default().data(event.to_string()));
                }
                Err(transcript) => {
                    tokens = transcript.segments.iter().map(|s| s.tokens.len() as u32).sum();
                    let done = json!({"type": "transcript.text.done", "text": transcript.text, "usage": usage(&transcript)});
                    yield Ok(Event::default().data(done.to_string()));
                }
            }
        }
        match run.await {
            Ok(Ok(())) => yield Ok(crate::inference::metering::usage_comment(0, tokens)),
            Ok(Err(e)) => yield Ok(Event::default().data(from_engine(e).body().to_string())),
            Err(e) => yield Ok(Event::default().data(ApiError::Internal(e.to_string()).body().to_string())),
        }
    };
    Sse::new(events).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(id: usize, start: f64, end: f64, text: &str) -> Segment {
        Segment {
            id,
            start,
            end,
            text: text.into(),
            tokens: vec![1],
            avg_logprob: -0.1,
            no_speech_prob: 0.0,
            temperature: 0.0,
        }
    }

    #[test]
    fn subtitles_number_srt_cues_and_head_vtt() {
        let segments = [segment(0, 0.0, 1.5, " Hello."), segment(1, 1.5, 3661.25, " Bye.")];
        assert_eq!(
            subtitles(&segments, false),
            "1\n00:00:00,000 --> 00:00:01,500\nHello.\n\n2\n00:00:01,500 --> 01:01:01,250\nBye.\n\n"
        );
        assert_eq!(
            subtitles(&segments, true),
            "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello.\n\n00:00:01.500 --> 01:01:01.250\nBye.\n\n"
        );
    }

    fn request(format: Format, stream: bool) -> SpeechRequest {
        SpeechRequest {
            model: None,
            file: base64::engine::general_purpose::STANDARD.encode(b"RIFF"),
            filename: Some("clip.WAV".into()),
            language: None,
            prompt: None,
            temperature: 0.0,
            response_format: format,
            stream,
        }
    }

    #[test]
    fn fields_are_validated_by_name() {
        let param = |r: ApiResult<Valid>| match r {
            Err(ApiError::InvalidParam { param, .. }) => param,
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("accepted"),
        };
        assert_eq!(validate(&request(Format::Json, false), false).unwrap().extension.as_deref(), Some("wav"));
        assert_eq!(param(validate(&request(Format::Srt, true), false)), "stream");
        assert_eq!(
            param(validate(&SpeechRequest { temperature: 1.5, ..request(Format::Json, false) }, false)),
            "temperature"
        );
        assert_eq!(
            param(validate(&SpeechRequest { language: Some("english".into()), ..request(Format::Json, false) }, false)),
            "language"
        );
        assert_eq!(
            param(validate(&SpeechRequest { file: String::new(), ..request(Format::Json, false) }, false)),
            "file"
        );
        assert!(
            matches!(Format::parse("mp3"), Err(ApiError::InvalidParam { ref param, .. }) if param == "response_format")
        );
    }
}
