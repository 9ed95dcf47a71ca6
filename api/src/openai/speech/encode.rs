//! Synthesized audio as the response formats carry it: a WAV stream (its
//! sizes unknown up front, marked as the largest, as streaming servers do),
//! raw 16-bit PCM at 24 kHz (the rate OpenAI's `pcm` promises), or FLAC,
//! encoded once the audio is whole.

use bytes::Bytes;
use greenthread_protocol::error::{ApiError, ApiResult};

/// The rate of `pcm` audio, whatever the voice's own.
const PCM_RATE: u32 = 24_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    Wav,
    Pcm,
    Flac,
}

impl AudioFormat {
    /// The format a request asks for; WAV when it names none.
    ///
    /// # Errors
    /// [`ApiError::Unsupported`] for a format with no encoder here (mp3,
    /// opus, aac), [`ApiError::InvalidParam`] for an unknown one.
    pub fn parse(name: Option<&str>) -> ApiResult<Self> {
        match name {
            None | Some("wav") => Ok(Self::Wav),
            Some("pcm") => Ok(Self::Pcm),
            Some("flac") => Ok(Self::Flac),
            Some(other @ ("mp3" | "opus" | "aac")) => Err(ApiError::Unsupported {
                param: "response_format",
                message: format!("response_format {other} has no encoder on this server; use wav, pcm or flac"),
            }),
            Some(other) => Err(ApiError::invalid(
                "response_format",
                format!("unknown response_format {other:?}; one of wav, pcm, flac"),
            )),
        }
    }
}

/// Encodes one response's audio, stretch by stretch.
pub struct Encoder {
    format: AudioFormat,
    rate: u32,
    started: bool,
    /// The whole audio, for FLAC.
    held: Vec<f32>,
}

impl Encoder {
    pub fn new(format: AudioFormat, rate: u32) -> Self {
        Self { format, rate, started: false, held: Vec::new() }
    }

    pub fn content_type(&self) -> &'static str {
        match self.format {
            AudioFormat::Wav => "audio/wav",
            AudioFormat::Pcm => "audio/pcm",
            AudioFormat::Flac => "audio/flac",
        }
    }

    /// The bytes of `audio` (mono, in [-1, 1]) that can go out now.
    pub fn push(&mut self, audio: &[f32]) -> Bytes {
        let mut out = Vec::new();
        match self.format {
            AudioFormat::Wav => {
                if !self.started {
                    out.extend(wav_header(self.rate));
                }
                out.extend(pcm16(audio));
            }
            AudioFormat::Pcm => {
                let resampled =
                    greenthread_node_runtime::asr::audio::resample(audio, self.rate as usize, PCM_RATE as usize);
                out.extend(pcm16(&resampled.unwrap_or_default()));
            }
            AudioFormat::Flac => self.held.extend_from_slice(audio),
        }
        self.started = true;
        Bytes::from(out)
    }

    /// What is left to send once the audio has ended.
    ///
    /// # Errors
    /// When the FLAC encoder fails.
    pub fn finish(&mut self) -> Result<Bytes, String> {
        if self.format != AudioFormat::Flac {
            return Ok(Bytes::new());
        }
        let samples: Vec<i32> = self.held.iter().map(|s| i32::from(to_i16(*s))).collect();
        flac(&samples, self.rate).map(Bytes::from)
    }
}

fn to_i16(sample: f32) -> i16 {
    (sample.clamp(-1.0, 1.0) * 32767.0) as i16
}

fn pcm16(audio: &[f32]) -> Vec<u8> {
    audio.iter().flat_map(|s| to_i16(*s).to_le_bytes()).collect()
}

/// A mono 16-bit WAV header whose sizes say "until the stream ends".
fn wav_header(rate: u32) -> Vec<u8> {
    let unknown = u32::MAX;
    let mut out = Vec::with_capacity(44);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&unknown.to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(unknown - 36).to_le_bytes());
    out
}

fn flac(samples: &[i32], rate: u32) -> Result<Vec<u8>, String> {
    use flacenc::component::BitRepr;
    use flacenc::error::Verify;
    let config =
        flacenc::config::Encoder::default().into_verified().map_err(|(_, e)| format!("FLAC settings: {e:?}"))?;
    let source = flacenc::source::MemSource::from_samples(samples, 1, 16, rate as usize);
    let stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size)
        .map_err(|e| format!("FLAC encoding failed: {e:?}"))?;
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream.write(&mut sink).map_err(|e| format!("FLAC encoding failed: {e:?}"))?;
    let mut bytes = sink.as_slice().to_vec();
    // A fixed-blocksize stream's STREAMINFO gives the block size as both
    // its least and its most (the last, shorter block does not count);
    // flacenc writes the last block's size as the least, which decoders
    // that check it (symphonia) refuse.
    if bytes.len() >= 12 && &bytes[..4] == b"fLaC" {
        let (least, most) = (8..10, 10..12);
        let most = bytes[most].to_vec();
        bytes[least].copy_from_slice(&most);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenthread_node_runtime::asr::audio;

    fn tone(rate: u32, seconds: f32) -> Vec<f32> {
        let n = (rate as f32 * seconds) as usize;
        (0..n).map(|i| 0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin()).collect()
    }

    #[test]
    fn a_wav_stream_decodes_to_what_was_pushed() {
        let mut encoder = Encoder::new(AudioFormat::Wav, 22050);
        let audio = tone(22050, 1.0);
        let mut bytes = encoder.push(&audio[..10_000]).to_vec();
        bytes.extend(encoder.push(&audio[10_000..]));
        bytes.extend(encoder.finish().unwrap());
        assert_eq!(bytes.len(), 44 + 2 * audio.len(), "one header, then the samples");
        // Decoded at the recognizer's 16 kHz: the same second of audio.
        let decoded = audio::decode(bytes, Some("wav")).unwrap();
        assert!((decoded.len() as i64 - 16_000).abs() < 50, "{}", decoded.len());
    }

    #[test]
    fn pcm_is_at_24_khz_and_flac_decodes() {
        let mut encoder = Encoder::new(AudioFormat::Pcm, 22050);
        let pcm = encoder.push(&tone(22050, 1.0));
        assert!((pcm.len() as i64 / 2 - 24_000).abs() < 50, "{}", pcm.len());
        let mut encoder = Encoder::new(AudioFormat::Flac, 22050);
        assert!(encoder.push(&tone(22050, 1.0)).is_empty(), "FLAC waits for the whole audio");
        let flac = encoder.finish().unwrap();
        assert_eq!(&flac[..4], b"fLaC");
        let decoded = audio::decode(flac.to_vec(), Some("flac")).unwrap();
        assert!((decoded.len() as i64 - 16_000).abs() < 50, "{}", decoded.len());
    }

    #[test]
    fn formats_without_an_encoder_are_refused_by_name() {
        assert_eq!(AudioFormat::parse(None).unwrap(), AudioFormat::Wav);
        assert!(matches!(AudioFormat::parse(Some("mp3")), Err(ApiError::Unsupported { .. })));
        assert!(matches!(AudioFormat::parse(Some("ogg")), Err(ApiError::InvalidParam { .. })));
    }
}
