//! Speech recognition: a Whisper model from a Hugging Face directory
//! (`config.json` with `model_type: whisper`, `model.safetensors`,
//! `tokenizer.json`), run by candle-transformers' Whisper. Asleep it keeps
//! its tokenizer and mel filters; awake its weights. Audio is heard in
//! 30-second windows, each decoded with Whisper's timestamp rules into
//! segments, the next window starting where the last whole segment ended.

pub mod audio;
mod decoder;
pub mod languages;
pub mod mel;
pub mod timestamps;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::{Device, Tensor};
use candle_transformers::models::whisper::{self as whisper_model, model::Whisper};
use greenthread_core::{ChatMessage, ModelKind, Task};
use serde_json::Value;

use self::timestamps::{SECONDS_PER_STEP, Specials};
use crate::engine::{GenerateRequest, GenerationStream, ModelInfo, ModelInstance, ServedModel, WeightSource};
use crate::{Error, Result};

/// Seconds of audio in one window.
const WINDOW_SECONDS: f64 = 30.0;
/// Mel frames per second (a hop of 160 samples at 16 kHz).
const FRAMES_PER_SECOND: usize = 100;
/// Most tokens of an earlier text given as the prompt (half the decoder's context, as Whisper does).
const MAX_PROMPT_TOKENS: usize = 223;

pub use crate::engine::{Segment, TranscribeOptions, Transcript};

/// Token ids of the task and language markers.
#[derive(Debug, Clone)]
struct Markers {
    sot: u32,
    transcribe: Option<u32>,
    translate: Option<u32>,
    start_of_prev: Option<u32>,
    no_speech: Option<u32>,
    specials: Specials,
    /// `en` → `<|en|>`, for a multilingual model.
    languages: BTreeMap<String, u32>,
}

/// What a Whisper model keeps while asleep.
struct Host {
    path: PathBuf,
    config: whisper_model::Config,
    tokenizer: tokenizers::Tokenizer,
    markers: Markers,
    filters: Vec<f32>,
    suppress_at_start: Vec<u32>,
    info: ModelInfo,
}

/// The weights of an awake model: candle's Whisper (its encoder is used)
/// and a decoder with a self-attention cache over the same tensors.
struct Awake {
    whisper: Whisper,
    decoder: decoder::Decoder,
}

/// A Whisper model.
pub struct SpeechModel {
    host: Host,
    device: Device,
    name: String,
    /// One transcription at a time runs on the weights (the encoder's caches are per model).
    awake: Mutex<Option<Arc<Mutex<Awake>>>>,
}

impl SpeechModel {
    /// Opens a packed model directory, asleep.
    ///
    /// # Errors
    /// [`Error::InvalidModel`] when a file is missing or is not a Whisper model's.
    pub fn open(
        files: &BTreeMap<String, String>,
        data_bytes: u64,
        path: &Path,
        device: &Device,
        name: &str,
    ) -> Result<Self> {
        let bad = |what: String| Error::invalid(path, what);
        let file = |name: &str| files.get(name).ok_or_else(|| bad(format!("the model has no {name}")));
        let raw: Value = serde_json::from_str(file("config.json")?).map_err(|e| bad(format!("config.json: {e}")))?;
        let config: whisper_model::Config =
            serde_json::from_value(raw.clone()).map_err(|e| bad(format!("config.json: {e}")))?;
        let tokenizer: tokenizers::Tokenizer =
            file("tokenizer.json")?.parse().map_err(|e| bad(format!("tokenizer.json: {e}")))?;
        let id = |token: &str| tokenizer.token_to_id(token);
        let need = |token: &str| id(token).ok_or_else(|| bad(format!("tokenizer.json has no {token}")));
        let no_timestamps = need(whisper_model::NO_TIMESTAMPS_TOKEN)?;
        let specials =
            Specials { eot: need(whisper_model::EOT_TOKEN)?, no_timestamps, timestamp_begin: no_timestamps + 1 };
        let sot = need(whisper_model::SOT_TOKEN)?;
        let translate = id(whisper_model::TRANSLATE_TOKEN);
        // Language markers sit between the start of transcript and the task markers.
        let languages = match translate {
            Some(end) => (sot + 1..end)
                .filter_map(|t| {
                    let token = tokenizer.id_to_token(t)?;
                    let code = token.strip_prefix("<|")?.strip_suffix("|>")?;
                    code.chars().all(|c| c.is_ascii_lowercase()).then(|| (code.to_owned(), t))
                })
                .collect(),
            None => BTreeMap::new(),
        };
        let markers = Markers {
            sot,
            transcribe: id(whisper_model::TRANSCRIBE_TOKEN),
            translate,
            start_of_prev: id("<|startofprev|>"),
            no_speech: whisper_model::NO_SPEECH_TOKENS.iter().find_map(|t| id(t)),
            specials,
            languages,
        };
        let mut suppress_at_start: Vec<u32> = raw["begin_suppress_tokens"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t.as_u64().map(|t| t as u32)).collect())
            .unwrap_or_default();
        suppress_at_start.push(specials.eot);
        let filters = mel::filters(audio::SAMPLE_RATE, whisper_model::N_FFT, config.num_mel_bins);
        let info = ModelInfo {
            kind: ModelKind::Asr,
            architecture: "whisper".into(),
            description: raw["_name_or_path"].as_str().map(str::to_owned),
            context_length: config.max_target_positions,
            vocab_size: config.vocab_size,
            weight_bytes: data_bytes as usize,
            has_chat_template: false,
            tool_calls: false,
            embedding_dimensions: None,
        };
        let host = Host { path: path.to_path_buf(), config, tokenizer, markers, filters, suppress_at_start, info };
        Ok(Self { host, device: device.clone(), name: name.to_owned(), awake: Mutex::new(None) })
    }

    fn awake(&self) -> Option<Arc<Mutex<Awake>>> {
        self.awake.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn wrong_kind(&self, task: Task) -> Error {
        Error::WrongKind(greenthread_core::model_kind::wrong_kind(&self.name, ModelKind::Asr, task))
    }

    /// The task markers that start every window.
    fn start(&self, language: Option<u32>, translate: bool) -> Result<Vec<u32>> {
        let m = &self.host.markers;
        let mut start = vec![m.sot];
        if !m.languages.is_empty() {
            start.extend(language);
            let task = if translate { m.translate } else { m.transcribe };
            start.extend(task);
        } else if translate {
            return Err(Error::Invalid {
                param: "model",
                message: format!("model {} hears English only; it cannot translate", self.name),
            });
        }
        Ok(start)
    }

    fn language_of(&self, code: &str) -> Result<u32> {
        self.host.markers.languages.get(code).copied().ok_or_else(|| Error::Invalid {
            param: "language",
            message: format!(
                "model {} does not know language {code:?} (ISO-639-1 codes such as en, fr, de)",
                self.name
            ),
        })
    }

    /// The likeliest language of a window's audio.
    fn detect(&self, decoder: &decoder::Decoder, window: &decoder::Window) -> Result<(String, u32)> {
        let m = &self.host.markers;
        let logits = decoder.step(&mut window.fresh(), &[m.sot])?.to_vec1::<f32>()?;
        m.languages
            .iter()
            .max_by(|a, b| logits[*a.1 as usize].total_cmp(&logits[*b.1 as usize]))
            .map(|(code, id)| (code.clone(), *id))
            .ok_or_else(|| Error::Inference("the model knows no languages".into()))
    }

    /// Decodes one window: its tokens after the markers, their mean
    /// log-probability, and the probability that it holds no speech.
    fn decode_window(
        &self,
        decoder: &decoder::Decoder,
        audio: &decoder::Window,
        start: &[u32],
        temperature: f32,
        rng: &mut rand::rngs::StdRng,
    ) -> Result<(Vec<u32>, f64, f64)> {
        let m = &self.host.markers;
        let specials = m.specials;
        let sot_at = start.iter().position(|t| *t == m.sot).unwrap_or(0);
        let room = self
            .host
            .config
            .max_target_positions
            .saturating_sub(start.len())
            .min(self.host.config.max_target_positions / 2);
        let mut window = audio.fresh();
        // The logits after the start of transcript tell how likely the window holds no speech.
        let at_sot = decoder.step(&mut window, &start[..=sot_at])?;
        let no_speech = match m.no_speech {
            Some(token) => f64::from(candle_nn::ops::softmax_last_dim(&at_sot)?.to_vec1::<f32>()?[token as usize]),
            None => 0.0,
        };
        let mut next_logits =
            if sot_at + 1 < start.len() { decoder.step(&mut window, &start[sot_at + 1..])? } else { at_sot };
        let mut sampled = Vec::new();
        let mut logprob_sum = 0f64;
        for step in 0..room {
            let mut logits = next_logits.to_vec1::<f32>()?;
            for &t in &self.host.config.suppress_tokens {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
            if step == 0 {
                for &t in &self.host.suppress_at_start {
                    if let Some(l) = logits.get_mut(t as usize) {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
            timestamps::constrain(&mut logits, &sampled, &specials);
            let next = pick(&logits, temperature, rng);
            logprob_sum += log_softmax_at(&logits, next);
            if next == specials.eot || step + 1 == room {
                break;
            }
            sampled.push(next);
            next_logits = decoder.step(&mut window, &[next])?;
        }
        let avg = logprob_sum / (sampled.len() + 1) as f64;
        Ok((sampled, avg, no_speech))
    }

    fn text_of(&self, tokens: &[u32]) -> Result<String> {
        self.host.tokenizer.decode(tokens, true).map_err(|e| Error::Inference(format!("detokenizing: {e}")))
    }
}

/// The next token: the likeliest, or sampled at `temperature`.
fn pick(logits: &[f32], temperature: f32, rng: &mut rand::rngs::StdRng) -> u32 {
    use rand::Rng;
    let best = (0..logits.len()).max_by(|a, b| logits[*a].total_cmp(&logits[*b])).unwrap_or(0);
    if temperature <= 0.0 {
        return best as u32;
    }
    let max = logits[best];
    let weights: Vec<f64> = logits.iter().map(|l| f64::from((l - max) / temperature).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut target = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        target -= w;
        if target <= 0.0 {
            return i as u32;
        }
    }
    best as u32
}

fn log_softmax_at(logits: &[f32], at: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let total: f64 = logits.iter().map(|l| f64::from(l - max).exp()).sum();
    f64::from(logits[at as usize] - max) - total.ln()
}

impl ServedModel for SpeechModel {
    fn wake(&self, source: WeightSource<'_>) -> Result<()> {
        if self.is_awake() {
            return Ok(());
        }
        let tensors = source.safetensors(&self.device)?;
        // Converted once, so candle's model and the decoder share every tensor.
        let tensors = tensors
            .into_iter()
            .map(|(name, t)| Ok((name, t.to_dtype(whisper_model::DTYPE)?)))
            .collect::<candle_core::Result<std::collections::HashMap<_, _>>>()?;
        let builder = candle_nn::VarBuilder::from_tensors(tensors, whisper_model::DTYPE, &self.device);
        let invalid = |e: candle_core::Error| Error::invalid(&self.host.path, e);
        let whisper = Whisper::load(&builder, self.host.config.clone()).map_err(invalid)?;
        let decoder = decoder::Decoder::load(builder.pp("model.decoder"), &self.host.config)?;
        let awake = Awake { whisper, decoder };
        *self.awake.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(Mutex::new(awake)));
        Ok(())
    }

    fn sleep(&self) -> Result<()> {
        self.awake.lock().unwrap_or_else(PoisonError::into_inner).take();
        crate::builtin::release_freed_memory();
        Ok(())
    }

    fn is_awake(&self) -> bool {
        self.awake().is_some()
    }

    fn device_bytes(&self) -> usize {
        // Weights are held as f32 on the device.
        if self.is_awake() { self.host.info.weight_bytes * 2 } else { 0 }
    }
}

impl ModelInstance for SpeechModel {
    fn info(&self) -> &ModelInfo {
        &self.host.info
    }

    fn chat_prompt(&self, _: &[ChatMessage], _: Option<&Value>) -> Result<Vec<u32>> {
        Err(self.wrong_kind(Task::Generate))
    }

    fn text_prompt(&self, text: &str) -> Vec<u32> {
        self.host.tokenizer.encode_fast(text, false).map(|e| e.get_ids().to_vec()).unwrap_or_default()
    }

    fn generate(&self, _: GenerateRequest) -> Result<GenerationStream> {
        Err(self.wrong_kind(Task::Generate))
    }

    fn transcribe(
        &self,
        samples: &[f32],
        options: &TranscribeOptions,
        on_segment: &mut dyn FnMut(&Segment),
    ) -> Result<Transcript> {
        use rand::SeedableRng;
        let model = self.awake().ok_or(Error::Asleep)?;
        let mut model = model.lock().unwrap_or_else(PoisonError::into_inner);
        let Awake { whisper, decoder } = &mut *model;
        let config = &self.host.config;
        // Frame i centred on sample 160·i, as Whisper's STFT frames it: half
        // an FFT of the audio reflected before it (candle's frames start at
        // their first sample, and a model trained on centred frames hears
        // the shift), and a window's worth of silence after it.
        let half = whisper_model::N_FFT / 2;
        let mut padded: Vec<f32> = (1..=half).rev().map(|i| samples.get(i).copied().unwrap_or(0.0)).collect();
        padded.extend_from_slice(samples);
        padded.extend(std::iter::repeat_n(0f32, audio::SAMPLE_RATE * WINDOW_SECONDS as usize));
        let mel = whisper_model::audio::pcm_to_mel(config, &padded, &self.host.filters);
        let frames = mel.len() / config.num_mel_bins;
        let mel = Tensor::from_vec(mel, (1, config.num_mel_bins, frames), &self.device)?;
        let content_frames = samples.len() * FRAMES_PER_SECOND / audio::SAMPLE_RATE;
        let duration = samples.len() as f64 / audio::SAMPLE_RATE as f64;
        let mut language = options.language.as_deref().map(|code| self.language_of(code)).transpose()?;
        let mut language_code = options.language.clone();
        let prompt = match (&options.prompt, self.host.markers.start_of_prev) {
            (Some(text), Some(prev)) if !text.trim().is_empty() => {
                let ids = self.text_prompt(&format!(" {}", text.trim()));
                let keep = ids.len().saturating_sub(MAX_PROMPT_TOKENS);
                std::iter::once(prev).chain(ids[keep..].iter().copied()).collect()
            }
            _ => Vec::new(),
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let mut segments: Vec<Segment> = Vec::new();
        let mut seek = 0usize;
        while seek < content_frames {
            let window = whisper_model::N_FRAMES.min(frames - seek);
            let features = whisper.encoder.forward(&mel.narrow(2, seek, window)?, true)?;
            let audio = decoder.window(&features)?;
            if language.is_none() && !self.host.markers.languages.is_empty() {
                let (code, id) = self.detect(decoder, &audio)?;
                language = Some(id);
                language_code = Some(code);
            }
            let mut start = prompt.clone();
            start.extend(self.start(language, options.translate)?);
            let (tokens, avg_logprob, no_speech_prob) =
                self.decode_window(decoder, &audio, &start, options.temperature, &mut rng)?;
            let window_seconds = (content_frames - seek).min(window) as f64 / FRAMES_PER_SECOND as f64;
            let (spans, resume) = timestamps::segments(&tokens, &self.host.markers.specials, window_seconds);
            let offset = seek as f64 / FRAMES_PER_SECOND as f64;
            for span in spans {
                let text = self.text_of(&span.tokens)?;
                if text.trim().is_empty() || span.start >= window_seconds {
                    continue;
                }
                let segment = Segment {
                    id: segments.len(),
                    start: round(offset + span.start),
                    end: round(offset + span.end.min(window_seconds)),
                    text,
                    tokens: span.tokens,
                    avg_logprob,
                    no_speech_prob,
                    temperature: options.temperature,
                };
                on_segment(&segment);
                segments.push(segment);
            }
            // At least one timestamp step forward, so a window never repeats.
            let advance = ((resume / SECONDS_PER_STEP).round() as usize * 2).max(2);
            seek += advance.min(window);
        }
        let text = segments.iter().map(|s| s.text.as_str()).collect::<String>().trim().to_owned();
        let language = language_code.unwrap_or_else(|| "en".into());
        Ok(Transcript { text, language, duration, segments })
    }
}

/// Seconds to the millisecond, as the API reports them.
fn round(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}
