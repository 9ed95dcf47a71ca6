//! Whisper's mel filterbank: 80 (or 128) triangular filters over the 201
//! bins of a 400-point FFT at 16 kHz, on the Slaney mel scale with Slaney
//! area normalisation (librosa's defaults, which Whisper was trained with).

/// Hz to mel on the Slaney scale: linear below 1 kHz, logarithmic above.
fn mel_of(hz: f64) -> f64 {
    const LOG_STEP: f64 = 0.068_751_777_420_949_12; // ln(6.4) / 27
    if hz < 1000.0 { 3.0 * hz / 200.0 } else { 15.0 + (hz / 1000.0).ln() / LOG_STEP }
}

fn hz_of(mel: f64) -> f64 {
    const LOG_STEP: f64 = 0.068_751_777_420_949_12;
    if mel < 15.0 { 200.0 * mel / 3.0 } else { 1000.0 * ((mel - 15.0) * LOG_STEP).exp() }
}

/// The filters, row-major: `n_mels` rows of `n_fft / 2 + 1` weights.
pub fn filters(sample_rate: usize, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let bins = n_fft / 2 + 1;
    let bin_hz: Vec<f64> = (0..bins).map(|k| k as f64 * sample_rate as f64 / n_fft as f64).collect();
    let (low, high) = (mel_of(0.0), mel_of(sample_rate as f64 / 2.0));
    let edges: Vec<f64> = (0..n_mels + 2).map(|i| hz_of(low + (high - low) * i as f64 / (n_mels + 1) as f64)).collect();
    let mut weights = vec![0f32; n_mels * bins];
    for m in 0..n_mels {
        let (left, centre, right) = (edges[m], edges[m + 1], edges[m + 2]);
        let area = 2.0 / (right - left);
        for (k, hz) in bin_hz.iter().enumerate() {
            let rising = (hz - left) / (centre - left);
            let falling = (right - hz) / (right - centre);
            weights[m * bins + k] = (rising.min(falling).max(0.0) * area) as f32;
        }
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_is_linear_below_1khz_and_round_trips() {
        assert!((mel_of(1000.0) - 15.0).abs() < 1e-9);
        assert!((mel_of(500.0) - 7.5).abs() < 1e-9);
        for hz in [0.0, 120.0, 999.0, 1000.0, 4321.0, 8000.0] {
            assert!((hz_of(mel_of(hz)) - hz).abs() < 1e-6, "{hz}");
        }
    }

    #[test]
    fn every_filter_is_one_triangle_with_librosas_first_weights() {
        let f = filters(16_000, 400, 80);
        assert_eq!(f.len(), 80 * 201);
        for m in 0..80 {
            let row = &f[m * 201..(m + 1) * 201];
            let nonzero: Vec<usize> = (0..201).filter(|&k| row[k] > 0.0).collect();
            assert!(!nonzero.is_empty(), "filter {m} is empty");
            assert_eq!(nonzero.last().unwrap() - nonzero[0] + 1, nonzero.len(), "filter {m} is one run");
        }
        // The first filter rises over bin 1 (40 Hz) only: 40 Hz is 0.6 mel of its 0.6-mel rise.
        assert!((f[1] - 0.024_862_59).abs() < 1e-6, "{}", f[1]);
        assert_eq!(f[0], 0.0);
    }
}
