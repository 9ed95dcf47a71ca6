//! Text to speech: a Piper voice (a VITS model in ONNX with its
//! `config.json`, Piper's `.onnx.json`), run by ONNX Runtime, its input
//! phonemized by espeak-ng. Asleep it keeps its config and phoneme map;
//! awake an ONNX Runtime session. Text is spoken a sentence at a time, each
//! sentence's audio handed on as soon as it exists.

pub mod espeak;
pub mod onnx;
pub mod phonemes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use greenthread_core::{ChatMessage, ModelKind, Task};
use ort::session::Session;
use ort::value::Tensor;
use serde_json::Value;

use self::phonemes::PhonemeIds;
use crate::embed::pack;
use crate::engine::{GenerateRequest, GenerationStream, ModelInfo, ModelInstance, ServedModel, WeightSource};
pub use crate::engine::{SpeakOptions, Speaker, Voice};
use crate::{Error, Result};

/// Seconds of silence between sentences.
const SENTENCE_GAP_SECONDS: f32 = 0.2;

/// Whether a packed directory's `config.json` is a Piper voice's.
pub fn is_voice(config: &Value) -> bool {
    config.get("phoneme_id_map").is_some() && config.get("audio").is_some()
}

/// A voice's settings from its config.
#[derive(Debug, Clone)]
struct Settings {
    sample_rate: u32,
    espeak_voice: String,
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
    /// Speaker names to ids; one unnamed speaker when empty.
    speakers: BTreeMap<String, i64>,
    /// The name of the only speaker of a one-speaker voice.
    name: String,
    language: Option<String>,
}

/// A Piper voice.
pub struct VoiceModel {
    path: PathBuf,
    settings: Settings,
    ids: PhonemeIds,
    info: ModelInfo,
    name: String,
    /// ONNX Runtime runs one synthesis at a time per session.
    awake: Mutex<Option<Arc<Mutex<Session>>>>,
}

impl VoiceModel {
    /// Opens a packed voice, asleep; loads espeak-ng and ONNX Runtime, so a
    /// missing library shows when the model is staged, not at its first request.
    ///
    /// # Errors
    /// [`Error::InvalidModel`] when the config is not a Piper voice's, or a library is missing.
    pub fn open(files: &BTreeMap<String, String>, data_bytes: u64, path: &Path, name: &str) -> Result<Self> {
        let bad = |what: String| Error::invalid(path, what);
        let config: Value = serde_json::from_str(files.get("config.json").ok_or_else(|| bad("no config.json".into()))?)
            .map_err(|e| bad(format!("config.json: {e}")))?;
        let phoneme_type = config["phoneme_type"].as_str().unwrap_or("espeak");
        if phoneme_type != "espeak" {
            return Err(bad(format!("voices phonemized by {phoneme_type:?} are not served; espeak ones are")));
        }
        let ids = PhonemeIds::from_json(&config["phoneme_id_map"]).map_err(bad)?;
        // Up to 384 kHz: anything above is no voice, and would overflow a WAV's byte rate.
        let sample_rate = config["audio"]["sample_rate"]
            .as_u64()
            .and_then(|r| u32::try_from(r).ok())
            .filter(|r| (1..=384_000).contains(r))
            .ok_or_else(|| bad("config.json has no audio.sample_rate".into()))?;
        let scale = |key: &str, default: f32| config["inference"][key].as_f64().map_or(default, |v| v as f32);
        let speakers = config["speaker_id_map"]
            .as_object()
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_i64()?))).collect())
            .unwrap_or_default();
        let settings = Settings {
            sample_rate,
            espeak_voice: config["espeak"]["voice"].as_str().unwrap_or("en-us").to_owned(),
            noise_scale: scale("noise_scale", 0.667),
            length_scale: scale("length_scale", 1.0),
            noise_w: scale("noise_w", 0.8),
            speakers,
            name: config["dataset"].as_str().filter(|d| !d.is_empty()).unwrap_or("default").to_owned(),
            language: config["language"]["code"].as_str().map(str::to_owned),
        };
        onnx::ready().map_err(bad)?;
        espeak::ready().map_err(bad)?;
        if !espeak::has_voice(&settings.espeak_voice).map_err(bad)? {
            return Err(bad(format!("espeak-ng has no voice {:?}, which this model speaks", settings.espeak_voice)));
        }
        let info = ModelInfo {
            kind: ModelKind::Tts,
            architecture: "piper".into(),
            description: config["dataset"].as_str().map(|d| format!("piper {d}")),
            context_length: 0,
            vocab_size: config["num_symbols"].as_u64().map_or(0, |n| n as usize),
            weight_bytes: data_bytes as usize,
            has_chat_template: false,
            tool_calls: false,
            embedding_dimensions: None,
        };
        Ok(Self { path: path.to_path_buf(), settings, ids, info, name: name.to_owned(), awake: Mutex::new(None) })
    }

    fn awake(&self) -> Option<Arc<Mutex<Session>>> {
        self.awake.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn wrong_kind(&self, task: Task) -> Error {
        Error::WrongKind(greenthread_core::model_kind::wrong_kind(&self.name, ModelKind::Tts, task))
    }

    /// The speaker id of `voice`, `None` for a one-speaker voice.
    fn speaker_id(&self, voice: &str) -> Result<Option<i64>> {
        let settings = &self.settings;
        if settings.speakers.is_empty() && voice == settings.name {
            return Ok(None);
        }
        settings.speakers.get(voice).map(|id| Some(*id)).ok_or_else(|| Error::Invalid {
            param: "voice",
            message: format!(
                "model {} has no voice {voice:?}; its voices: {}",
                self.name,
                self.voice_names().join(", ")
            ),
        })
    }

    fn voice_names(&self) -> Vec<String> {
        if self.settings.speakers.is_empty() {
            vec![self.settings.name.clone()]
        } else {
            self.settings.speakers.keys().cloned().collect()
        }
    }

    /// One sentence's audio, its peak at full scale (as Piper normalizes it).
    fn sentence(&self, session: &mut Session, ids: Vec<i64>, speaker: Option<i64>, speed: f32) -> Result<Vec<f32>> {
        let fail = |e: ort::Error| Error::Inference(format!("synthesis failed: {e}"));
        let s = &self.settings;
        let length = i64::try_from(ids.len()).unwrap_or(i64::MAX);
        let input = Tensor::from_array(([1usize, ids.len()], ids)).map_err(fail)?;
        let lengths = Tensor::from_array(([1usize], vec![length])).map_err(fail)?;
        let scales =
            Tensor::from_array(([3usize], vec![s.noise_scale, s.length_scale / speed, s.noise_w])).map_err(fail)?;
        let mut inputs = ort::inputs!["input" => input, "input_lengths" => lengths, "scales" => scales];
        if let Some(id) = speaker {
            inputs.push(("sid".into(), Tensor::from_array(([1usize], vec![id])).map_err(fail)?.into()));
        }
        let outputs = session.run(inputs).map_err(fail)?;
        let (_, audio) = outputs[0].try_extract_tensor::<f32>().map_err(fail)?;
        let peak = audio.iter().fold(0f32, |m, s| m.max(s.abs()));
        if peak < 1e-8 {
            return Ok(vec![0.0; audio.len()]);
        }
        Ok(audio.iter().map(|s| (s / peak).clamp(-1.0, 1.0)).collect())
    }
}

impl ServedModel for VoiceModel {
    fn wake(&self, source: WeightSource<'_>) -> Result<()> {
        if self.is_awake() {
            return Ok(());
        }
        let read;
        let bytes = match source {
            WeightSource::Memory(bytes) => bytes,
            WeightSource::File(path) => {
                read = std::fs::read(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
                &read[..]
            }
        };
        let onnx = pack::tensor_bytes(bytes, pack::ONNX_FILE).map_err(|e| Error::invalid(&self.path, e))?;
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let session = onnx::session(onnx, threads).map_err(|e| Error::invalid(&self.path, e))?;
        *self.awake.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(Mutex::new(session)));
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
        if self.is_awake() { self.info.weight_bytes } else { 0 }
    }
}

impl ModelInstance for VoiceModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn chat_prompt(&self, _: &[ChatMessage], _: Option<&Value>) -> Result<Vec<u32>> {
        Err(self.wrong_kind(Task::Generate))
    }

    fn text_prompt(&self, _: &str) -> Vec<u32> {
        Vec::new()
    }

    fn generate(&self, _: GenerateRequest) -> Result<GenerationStream> {
        Err(self.wrong_kind(Task::Generate))
    }

    fn speaker(&self) -> Option<Speaker> {
        let language = self.settings.language.clone();
        let voices = self.voice_names().into_iter().map(|id| Voice { id, language: language.clone() }).collect();
        Some(Speaker { sample_rate: self.settings.sample_rate, voices })
    }

    fn speak(&self, text: &str, options: &SpeakOptions, on_audio: &mut dyn FnMut(&[f32]) -> bool) -> Result<usize> {
        let speaker = self.speaker_id(&options.voice)?;
        let clauses = espeak::clauses(&self.settings.espeak_voice, text).map_err(Error::Inference)?;
        let sentences = phonemes::sentences(&clauses);
        if sentences.is_empty() {
            return Err(Error::Invalid { param: "input", message: "the input has nothing to say".into() });
        }
        let session = self.awake().ok_or(Error::Asleep)?;
        let gap = vec![0f32; (self.settings.sample_rate as f32 * SENTENCE_GAP_SECONDS / options.speed) as usize];
        let mut spoken = 0;
        for (i, sentence) in sentences.iter().enumerate() {
            let mut audio = if i == 0 { Vec::new() } else { gap.clone() };
            // The session is held for one sentence, never while the audio is
            // handed on: a slow reader waits alone, not every request to the voice.
            let said = {
                let mut session = session.lock().unwrap_or_else(PoisonError::into_inner);
                self.sentence(&mut session, self.ids.encode(sentence), speaker, options.speed)?
            };
            audio.extend(said);
            spoken += audio.len();
            if !on_audio(&audio) {
                break;
            }
        }
        Ok(spoken)
    }
}
