//! Audio files into what Whisper hears: WAV, MP3, FLAC and OGG (Vorbis)
//! decoded by symphonia, mixed down to mono and resampled to 16 kHz by
//! rubato.

use std::io::Cursor;

use rubato::{FftFixedIn, Resampler};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Whisper's sample rate.
pub const SAMPLE_RATE: usize = 16_000;
/// Longest audio one request may carry.
pub const MAX_SECONDS: usize = 30 * 60;
/// Sample rates a file may declare: from telephone-grade audio well below
/// 8 kHz up to the highest studio rate. A rate outside is a damaged or
/// hostile header, and resampling from it would take memory in proportion.
pub const RATES: std::ops::RangeInclusive<usize> = 1_000..=768_000;

/// Why audio could not be read: the client's file is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is not audio in a format GreenThread reads (WAV, MP3, FLAC, OGG): {0}")]
    Unrecognised(String),
    #[error("the audio could not be decoded: {0}")]
    Undecodable(String),
    #[error("the audio holds no samples")]
    Silent,
    #[error("the audio is longer than {MAX_SECONDS} seconds")]
    TooLong,
    #[error("the audio's sample rate, {0} Hz, is outside 1 kHz to 768 kHz")]
    Rate(usize),
}

/// Mono samples at 16 kHz from an audio file's bytes; `extension` (of the
/// file's name) is a hint for formats that are hard to sniff.
///
/// # Errors
/// [`AudioError`] saying what is wrong with the file.
pub fn decode(bytes: Vec<u8>, extension: Option<&str>) -> Result<Vec<f32>, AudioError> {
    if bytes.is_empty() {
        return Err(AudioError::Empty);
    }
    // symphonia panics on some damaged headers (a WAV declaring 0 Hz); a
    // client's file is refused for it, not allowed to take the request down.
    let (samples, rate) = std::panic::catch_unwind(|| decode_mono(bytes, extension))
        .map_err(|_| AudioError::Undecodable("the decoder failed on this file's header".into()))??;
    if samples.is_empty() {
        return Err(AudioError::Silent);
    }
    if samples.len() / rate > MAX_SECONDS {
        return Err(AudioError::TooLong);
    }
    resample(&samples, rate, SAMPLE_RATE)
}

/// The file's first audio track, mixed to mono, at its own rate.
fn decode_mono(bytes: Vec<u8>, extension: Option<&str>) -> Result<(Vec<f32>, usize), AudioError> {
    let source = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    if let Some(extension) = extension {
        hint.with_extension(extension);
    }
    let probed = symphonia::default::get_probe()
        .format(&hint, source, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| AudioError::Unrecognised(e.to_string()))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| AudioError::Unrecognised("it has no audio track".into()))?;
    let track_id = track.id;
    let rate = track.codec_params.sample_rate.map(|r| r as usize);
    if let Some(rate) = rate.filter(|r| !RATES.contains(r)) {
        return Err(AudioError::Rate(rate));
    }
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| AudioError::Unrecognised(e.to_string()))?;
    let mut mono = Vec::new();
    let mut rate_seen = rate;
    loop {
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => return Err(AudioError::Undecodable(e.to_string())),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(decoded) => decoded,
            // A damaged packet is skipped, as players do.
            Err(SymphoniaError::DecodeError(_)) => continue,
            Err(e) => return Err(AudioError::Undecodable(e.to_string())),
        };
        let spec = *decoded.spec();
        if !RATES.contains(&(spec.rate as usize)) {
            return Err(AudioError::Rate(spec.rate as usize));
        }
        rate_seen.get_or_insert(spec.rate as usize);
        let channels = spec.channels.count().max(1);
        let mut buffer = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buffer.copy_interleaved_ref(decoded);
        mono.extend(buffer.samples().chunks(channels).map(|frame| frame.iter().sum::<f32>() / channels as f32));
        if let Some(rate) = rate_seen
            && mono.len() / rate.max(1) > MAX_SECONDS
        {
            return Err(AudioError::TooLong);
        }
    }
    let rate = rate_seen.ok_or_else(|| AudioError::Undecodable("no sample rate".into()))?;
    Ok((mono, rate))
}

/// `samples` at `rate` resampled to `to` Hz.
///
/// # Errors
/// When a rate is zero.
pub fn resample(samples: &[f32], rate: usize, to: usize) -> Result<Vec<f32>, AudioError> {
    if rate == to {
        return Ok(samples.to_vec());
    }
    let bad = |e: String| AudioError::Undecodable(format!("resampling from {rate} Hz: {e}"));
    let mut resampler = FftFixedIn::<f32>::new(rate, to, 1024, 2, 1).map_err(|e| bad(e.to_string()))?;
    let delay = resampler.output_delay();
    let expected = samples.len() * to / rate;
    let mut out = Vec::with_capacity(expected + delay + 2048);
    let mut rest = samples;
    while rest.len() >= resampler.input_frames_next() {
        let (chunk, tail) = rest.split_at(resampler.input_frames_next());
        out.extend_from_slice(&resampler.process(&[chunk], None).map_err(|e| bad(e.to_string()))?[0]);
        rest = tail;
    }
    // The last partial chunk (none when the audio filled the chunks
    // exactly), then silence until the delayed output is out.
    let last = [rest];
    let last = if rest.is_empty() { None } else { Some(&last[..]) };
    out.extend_from_slice(&resampler.process_partial(last, None).map_err(|e| bad(e.to_string()))?[0]);
    while out.len() < expected + delay {
        out.extend_from_slice(&resampler.process_partial::<&[f32]>(None, None).map_err(|e| bad(e.to_string()))?[0]);
    }
    Ok(out[delay..delay + expected].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16-bit PCM WAV of `samples` at `rate` with `channels` interleaved.
    pub fn wav(samples: &[f32], rate: u32, channels: u16) -> Vec<u8> {
        let data: Vec<u8> =
            samples.iter().flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes()).collect();
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
        out.extend_from_slice(&(channels * 2).to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&data);
        out
    }

    fn tone(hz: f32, rate: u32, seconds: f32) -> Vec<f32> {
        let n = (rate as f32 * seconds) as usize;
        (0..n).map(|i| 0.5 * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin()).collect()
    }

    /// The frequency with the most energy, by correlating with candidate tones.
    fn loudest(samples: &[f32], candidates: &[f32]) -> f32 {
        let energy = |hz: f32| {
            let (mut re, mut im) = (0f32, 0f32);
            for (i, s) in samples.iter().enumerate() {
                let phase = 2.0 * std::f32::consts::PI * hz * i as f32 / SAMPLE_RATE as f32;
                re += s * phase.cos();
                im += s * phase.sin();
            }
            re * re + im * im
        };
        candidates.iter().copied().max_by(|a, b| energy(*a).total_cmp(&energy(*b))).unwrap_or(0.0)
    }

    #[test]
    fn a_44k_stereo_wav_becomes_16k_mono_of_the_same_length_and_pitch() {
        let left = tone(440.0, 44_100, 1.0);
        let stereo: Vec<f32> = left.iter().flat_map(|s| [*s, *s]).collect();
        let samples = decode(wav(&stereo, 44_100, 2), Some("wav")).unwrap();
        assert_eq!(samples.len(), 16_000);
        assert_eq!(loudest(&samples[1000..15_000], &[220.0, 330.0, 440.0, 880.0]), 440.0);
        let peak = samples[1000..15_000].iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!((peak - 0.5).abs() < 0.05, "amplitude kept: {peak}");
    }

    /// Found by fuzzing (`audio_file`): a WAV header declaring 2.97 GHz made
    /// the resampler ask for gigabytes; such a rate is refused first.
    #[test]
    fn a_sample_rate_outside_what_audio_uses_is_refused_before_resampling() {
        let tone = tone(440.0, 16_000, 0.05);
        assert_eq!(decode(wav(&tone, 1_000_000_000, 1), None), Err(AudioError::Rate(1_000_000_000)));
        assert_eq!(decode(wav(&tone, 999, 1), Some("wav")), Err(AudioError::Rate(999)));
        assert!(decode(wav(&tone, 8_000, 1), Some("wav")).is_ok(), "telephone audio is read");
    }

    /// Found by fuzzing (`audio_file`): symphonia panics on a WAV header
    /// declaring 0 Hz; the file is refused instead.
    #[test]
    fn a_header_the_decoder_panics_on_is_refused() {
        let decoded = decode(wav(&tone(440.0, 16_000, 0.05), 0, 1), Some("wav"));
        assert!(matches!(decoded, Err(AudioError::Undecodable(_))), "{decoded:?}");
    }

    #[test]
    fn audio_that_fills_the_resampler_chunks_exactly_resamples() {
        // 20 chunks of 1024 samples, and nothing left over.
        let samples = resample(&tone(440.0, 22_050, 1.0)[..20 * 1024], 22_050, 24_000).unwrap();
        assert_eq!(samples.len(), 20 * 1024 * 24_000 / 22_050);
    }

    #[test]
    fn a_16k_wav_passes_through() {
        let samples = decode(wav(&tone(300.0, 16_000, 0.5), 16_000, 1), None).unwrap();
        assert_eq!(samples.len(), 8_000);
    }

    #[test]
    fn empty_garbage_and_silent_files_are_refused_with_the_reason() {
        assert_eq!(decode(Vec::new(), None), Err(AudioError::Empty));
        assert!(matches!(decode(b"this is not audio at all".to_vec(), Some("wav")), Err(AudioError::Unrecognised(_))));
        assert_eq!(decode(wav(&[], 16_000, 1), Some("wav")), Err(AudioError::Silent));
    }
}
