//! Try-outs for the models that do not chat: speech to text (an uploaded
//! file or a recording from the microphone; the transcript with each
//! segment's time), text to speech (text, voice and speed; the audio in a
//! player), and reranking (a query and documents; the documents in the
//! model's order with their scores).

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use wasm_bindgen_futures::JsFuture;

use crate::api;

/// The models of `kinds` the key may read (by the kind the server knows them as).
async fn models_of(key: &str, kinds: &[&str]) -> Result<Vec<String>, String> {
    let rows = api::models(key).await?;
    Ok(rows.into_iter().filter(|m| m.kind.is_some_and(|k| kinds.contains(&k))).map(|m| m.name).collect())
}

/// A `<select>` of the models of `kinds`, loaded once; the first chosen.
#[component]
fn ModelPicker(
    key: StoredValue<String>,
    kinds: &'static [&'static str],
    model: RwSignal<String>,
    id: &'static str,
    label: &'static str,
) -> impl IntoView {
    let names = RwSignal::new(Vec::<String>::new());
    let missing = RwSignal::new(None::<String>);
    spawn_local(async move {
        match models_of(&key.get_value(), kinds).await {
            Ok(list) if list.is_empty() => missing.set(Some(format!("No {} model here.", kinds.join(" or ")))),
            Ok(list) => {
                model.set(list[0].clone());
                names.set(list);
            }
            Err(e) => missing.set(Some(e)),
        }
    });
    view! {
        <label for=id>{label}</label>
        <select id=id on:change=move |ev| model.set(event_target_value(&ev)) prop:value=move || model.get()>
            {move || names.get().into_iter().map(|m| view! { <option value=m.clone()>{m.clone()}</option> }).collect_view()}
        </select>
        {move || missing.get().map(|why| view! { <p class="muted">{why}</p> })}
    }
}

/// `request` with `key` as its bearer token.
fn bearer(request: gloo_net::http::RequestBuilder, key: &str) -> gloo_net::http::RequestBuilder {
    request.header("authorization", &format!("Bearer {key}"))
}

/// Sends a built request; the answer when it succeeded, else the server's message.
async fn send(request: Result<gloo_net::http::Request, gloo_net::Error>) -> Result<gloo_net::http::Response, String> {
    let response =
        request.map_err(|e| e.to_string())?.send().await.map_err(|e| format!("the server cannot be reached: {e}"))?;
    if response.ok() { Ok(response) } else { Err(failure(response).await) }
}

/// The message of an OpenAI-shaped error answer.
async fn failure(response: gloo_net::http::Response) -> String {
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    body["error"]["message"].as_str().unwrap_or("the request failed").to_owned()
}

/// One segment of a transcript, as the page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Timed {
    pub start: f64,
    pub end: f64,
    pub text: String,
}

/// `m:ss.s`, the way a transcript's times read.
pub fn clock(seconds: f64) -> String {
    let tenths = (seconds.max(0.0) * 10.0).round() as u64;
    format!("{}:{:02}.{}", tenths / 600, tenths / 10 % 60, tenths % 10)
}

/// The timed segments of a `verbose_json` transcription.
pub fn segments(verbose: &serde_json::Value) -> Vec<Timed> {
    verbose["segments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| Timed {
            start: s["start"].as_f64().unwrap_or(0.0),
            end: s["end"].as_f64().unwrap_or(0.0),
            text: s["text"].as_str().unwrap_or_default().trim().to_owned(),
        })
        .collect()
}

async fn transcribe(
    key: &str,
    model: &str,
    audio: &web_sys::Blob,
    filename: &str,
) -> Result<serde_json::Value, String> {
    let form = web_sys::FormData::new().map_err(|_| "no form data here")?;
    form.append_with_blob_and_filename("file", audio, filename).map_err(|_| "the audio cannot be sent")?;
    form.append_with_str("model", model).map_err(|_| "the form cannot be built")?;
    form.append_with_str("response_format", "verbose_json").map_err(|_| "the form cannot be built")?;
    let response = send(bearer(gloo_net::http::Request::post("/v1/audio/transcriptions"), key).body(form)).await?;
    response.json().await.map_err(|e| e.to_string())
}

#[component]
pub fn SpeechToText(key: String) -> impl IntoView {
    let key = StoredValue::new(key);
    let model = RwSignal::new(String::new());
    let text = RwSignal::new(String::new());
    let timed = RwSignal::new(Vec::<Timed>::new());
    let status = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let recorder = StoredValue::new_local(None::<web_sys::MediaRecorder>);
    let recording = RwSignal::new(false);
    let run = move |audio: web_sys::Blob, filename: String| {
        error.set(None);
        text.set(String::new());
        timed.set(Vec::new());
        status.set(Some("Transcribing…".into()));
        let (k, m) = (key.get_value(), model.get_untracked());
        spawn_local(async move {
            match transcribe(&k, &m, &audio, &filename).await {
                Ok(verbose) => {
                    let duration = verbose["duration"].as_f64().unwrap_or(0.0);
                    let language = verbose["language"].as_str().unwrap_or("?").to_owned();
                    status.set(Some(format!("{} of audio, language {language}", clock(duration))));
                    text.set(verbose["text"].as_str().unwrap_or_default().to_owned());
                    timed.set(segments(&verbose));
                }
                Err(e) => {
                    status.set(None);
                    error.set(Some(e));
                }
            }
        });
    };
    let upload = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        if let Some(file) = input.files().and_then(|f| f.get(0)) {
            let name = file.name();
            run(file.into(), name);
        }
    };
    let record = move |_| {
        if let Some(active) = recorder.get_value() {
            let _ = active.stop();
            recorder.set_value(None);
            recording.set(false);
            return;
        }
        // The browser records in its own container (WebM/Opus in Chromium);
        // it decodes that itself, and the server gets a WAV.
        let recorded = move |blob: web_sys::Blob| {
            spawn_local(async move {
                match as_wav(blob).await {
                    Ok(wav) => run(wav, "recording.wav".into()),
                    Err(e) => error.set(Some(e)),
                }
            });
        };
        spawn_local(async move {
            match start_recording(recorded).await {
                Ok(active) => {
                    recorder.set_value(Some(active));
                    recording.set(true);
                    status.set(Some("Recording… press Stop recording when done.".into()));
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <section class="card" data-playground="speech-to-text">
            <h2>"Speech to text"</h2>
            <div class="stack">
                <ModelPicker key kinds=&["asr"] model id="stt-model" label="Speech model" />
                <label for="stt-file">"Audio file (WAV, MP3, FLAC, OGG)"</label>
                <input id="stt-file" type="file" accept="audio/*" on:change=upload />
                <button type="button" on:click=record>{move || if recording.get() { "Stop recording" } else { "Record from the microphone" }}</button>
            </div>
            <p class="error" role="alert">{move || error.get()}</p>
            <p class="muted" data-stt-status>{move || status.get()}</p>
            <p data-transcript aria-live="polite">{move || text.get()}</p>
            <table data-segments>
                <tbody>
                    {move || timed.get().into_iter().map(|s| view! {
                        <tr><td class="muted">{format!("{} – {}", clock(s.start), clock(s.end))}</td><td>{s.text}</td></tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}

/// A mono 16-bit WAV of `samples` at `rate`.
pub fn wav_of(samples: &[f32], rate: u32) -> Vec<u8> {
    let data = u32::try_from(samples.len() * 2).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    for field in [16u32.to_le_bytes(), [1, 0, 1, 0], rate.to_le_bytes(), (rate * 2).to_le_bytes(), [2, 0, 16, 0]] {
        out.extend_from_slice(&field);
    }
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes());
    }
    out
}

/// A recording in whatever the browser recorded it as, decoded by the
/// browser and written as a WAV (its first channel).
async fn as_wav(recording: web_sys::Blob) -> Result<web_sys::Blob, String> {
    let bytes = JsFuture::from(recording.array_buffer()).await.map_err(|_| "the recording cannot be read")?;
    let bytes: js_sys::ArrayBuffer = bytes.dyn_into().map_err(|_| "the recording cannot be read")?;
    let context = web_sys::AudioContext::new().map_err(|_| "this browser has no Web Audio")?;
    let decoding = context.decode_audio_data(&bytes).map_err(|_| "the recording cannot be decoded")?;
    let decoded = JsFuture::from(decoding).await.map_err(|_| "the recording cannot be decoded");
    let _ = context.close();
    let audio: web_sys::AudioBuffer = decoded?.dyn_into().map_err(|_| "the recording cannot be decoded")?;
    let samples = audio.get_channel_data(0).map_err(|_| "the recording has no audio")?;
    let wav = wav_of(&samples, audio.sample_rate() as u32);
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(wav.as_slice()));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("audio/wav");
    web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options).map_err(|_| "no blob".to_owned())
}

/// Starts recording the microphone; `done` gets the recording once stopped.
async fn start_recording(done: impl Fn(web_sys::Blob) + 'static) -> Result<web_sys::MediaRecorder, String> {
    let devices = web_sys::window()
        .ok_or("no window")?
        .navigator()
        .media_devices()
        .map_err(|_| "this browser cannot record (the console must be served over HTTPS or from localhost)")?;
    let constraints = web_sys::MediaStreamConstraints::new();
    constraints.set_audio(&true.into());
    let asked =
        devices.get_user_media_with_constraints(&constraints).map_err(|_| "the microphone cannot be asked for")?;
    let stream: web_sys::MediaStream =
        JsFuture::from(asked).await.map_err(|_| "the microphone was refused")?.dyn_into().map_err(|_| "no stream")?;
    let recorder = web_sys::MediaRecorder::new_with_media_stream(&stream).map_err(|_| "this browser cannot record")?;
    let chunks = std::rc::Rc::new(js_sys::Array::new());
    let kept = chunks.clone();
    let on_data = Closure::<dyn FnMut(web_sys::BlobEvent)>::new(move |ev: web_sys::BlobEvent| {
        if let Some(blob) = ev.data() {
            kept.push(&blob);
        }
    });
    recorder.set_ondataavailable(Some(on_data.as_ref().unchecked_ref()));
    on_data.forget();
    let on_stop = Closure::<dyn FnMut()>::new(move || {
        for track in stream.get_tracks().iter() {
            if let Ok(track) = track.dyn_into::<web_sys::MediaStreamTrack>() {
                track.stop();
            }
        }
        if let Ok(blob) = web_sys::Blob::new_with_blob_sequence(&chunks) {
            done(blob);
        }
    });
    recorder.set_onstop(Some(on_stop.as_ref().unchecked_ref()));
    on_stop.forget();
    recorder.start().map_err(|_| "recording could not start")?;
    Ok(recorder)
}

async fn voices(key: &str, model: &str) -> Result<Vec<String>, String> {
    let response =
        send(bearer(gloo_net::http::Request::get("/v1/audio/voices").query([("model", model)]), key).build()).await?;
    let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    Ok(body["voices"].as_array().into_iter().flatten().filter_map(|v| v["id"].as_str().map(str::to_owned)).collect())
}

/// The WAV of `text` spoken by `voice`, as an object URL for the player.
async fn synthesize(key: &str, model: &str, voice: &str, text: &str, speed: f64) -> Result<String, String> {
    let body =
        serde_json::json!({"model": model, "voice": voice, "input": text, "speed": speed, "response_format": "wav"});
    let response = send(bearer(gloo_net::http::Request::post("/v1/audio/speech"), key).json(&body)).await?;
    let mut bytes = response.binary().await.map_err(|e| e.to_string())?;
    whole_wav(&mut bytes);
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes.as_slice()));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("audio/wav");
    let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options).map_err(|_| "no blob")?;
    web_sys::Url::create_object_url_with_blob(&blob).map_err(|_| "the audio cannot be played".to_owned())
}

/// A streamed WAV's header says "until the end" for its sizes; with the
/// whole file here, the real sizes let the player show its length.
pub fn whole_wav(bytes: &mut [u8]) {
    if bytes.len() >= 44 && &bytes[..4] == b"RIFF" && &bytes[36..40] == b"data" {
        let total = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        bytes[4..8].copy_from_slice(&(total - 8).to_le_bytes());
        bytes[40..44].copy_from_slice(&(total - 44).to_le_bytes());
    }
}

#[component]
pub fn TextToSpeech(key: String) -> impl IntoView {
    let key = StoredValue::new(key);
    let model = RwSignal::new(String::new());
    let voice_list = RwSignal::new(Vec::<String>::new());
    let voice = RwSignal::new(String::new());
    let text = RwSignal::new("Hello! This voice is served by GreenThread.".to_owned());
    let speed = RwSignal::new("1".to_owned());
    let audio = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    Effect::new(move |_| {
        let m = model.get();
        if m.is_empty() {
            return;
        }
        let k = key.get_value();
        spawn_local(async move {
            match voices(&k, &m).await {
                Ok(list) => {
                    voice.set(list.first().cloned().unwrap_or_default());
                    voice_list.set(list);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    });
    let speak = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Ok(s) = speed.get_untracked().trim().parse::<f64>() else {
            error.set(Some("Speed is a number from 0.25 to 4.".into()));
            return;
        };
        busy.set(true);
        error.set(None);
        let (k, m, v, t) = (key.get_value(), model.get_untracked(), voice.get_untracked(), text.get_untracked());
        spawn_local(async move {
            match synthesize(&k, &m, &v, &t, s).await {
                Ok(url) => {
                    if let Some(old) = audio.get_untracked() {
                        let _ = web_sys::Url::revoke_object_url(&old);
                    }
                    audio.set(Some(url));
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };
    view! {
        <section class="card" data-playground="text-to-speech">
            <h2>"Text to speech"</h2>
            <form class="stack" on:submit=speak>
                <ModelPicker key kinds=&["tts"] model id="tts-model" label="Voice model" />
                <label for="tts-voice">"Voice"</label>
                <select id="tts-voice" on:change=move |ev| voice.set(event_target_value(&ev)) prop:value=move || voice.get()>
                    {move || voice_list.get().into_iter().map(|v| view! { <option value=v.clone()>{v.clone()}</option> }).collect_view()}
                </select>
                <label for="tts-speed">"Speed"</label>
                <input id="tts-speed" type="number" min="0.25" max="4" step="0.25" prop:value=move || speed.get()
                    on:input=move |ev| speed.set(event_target_value(&ev)) />
                <label for="tts-text">"Text"</label>
                <textarea id="tts-text" rows="3" prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))></textarea>
                <button type="submit" disabled=move || busy.get()>{move || if busy.get() { "Speaking…" } else { "Speak" }}</button>
            </form>
            <p class="error" role="alert">{move || error.get()}</p>
            {move || audio.get().map(|src| view! { <audio data-speech controls autoplay src=src></audio> })}
        </section>
    }
}

/// The documents in the model's order: (index, score, text).
async fn rerank(
    key: &str,
    model: &str,
    query: &str,
    documents: &[String],
) -> Result<Vec<(usize, f64, String)>, String> {
    let body = serde_json::json!({"model": model, "query": query, "documents": documents});
    let response = send(bearer(gloo_net::http::Request::post("/v1/rerank"), key).json(&body)).await?;
    let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    Ok(body["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let index = r["index"].as_u64()? as usize;
            Some((index, r["relevance_score"].as_f64()?, documents.get(index)?.clone()))
        })
        .collect())
}

#[component]
pub fn Rerank(key: String) -> impl IntoView {
    let key = StoredValue::new(key);
    let model = RwSignal::new(String::new());
    let query = RwSignal::new(String::new());
    let documents = RwSignal::new(String::new());
    let ranked = RwSignal::new(Vec::<(usize, f64, String)>::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let run = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let docs: Vec<String> =
            documents.get_untracked().lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
        if query.get_untracked().trim().is_empty() || docs.is_empty() {
            error.set(Some("Write a query and at least one document (one per line).".into()));
            return;
        }
        busy.set(true);
        error.set(None);
        let (k, m, q) = (key.get_value(), model.get_untracked(), query.get_untracked());
        spawn_local(async move {
            match rerank(&k, &m, &q, &docs).await {
                Ok(list) => ranked.set(list),
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };
    view! {
        <section class="card" data-playground="rerank">
            <h2>"Rerank"</h2>
            <form class="stack" on:submit=run>
                <ModelPicker key kinds=&["reranker", "embedding"] model id="rerank-model" label="Rerank model" />
                <label for="rerank-query">"Query"</label>
                <input id="rerank-query" prop:value=move || query.get() on:input=move |ev| query.set(event_target_value(&ev)) />
                <label for="rerank-documents">"Documents, one per line"</label>
                <textarea id="rerank-documents" rows="5" prop:value=move || documents.get()
                    on:input=move |ev| documents.set(event_target_value(&ev))></textarea>
                <button type="submit" disabled=move || busy.get()>{move || if busy.get() { "Ranking…" } else { "Rank" }}</button>
            </form>
            <p class="error" role="alert">{move || error.get()}</p>
            <ol data-ranked>
                {move || ranked.get().into_iter().map(|(index, score, text)| view! {
                    <li data-index=index><span class="muted">{format!("{score:.3}")}</span>" "{text}</li>
                }).collect_view()}
            </ol>
        </section>
    }
}
