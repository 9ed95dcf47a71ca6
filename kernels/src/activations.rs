//! Activations quantized to 8 bits in 32-element blocks, as ggml's Q8_0.

use super::BLOCK;

/// `m` rows of `k` activations: i8 values, one f32 scale per block, and per
/// block `-offset · Σ values`, the correction that lets unsigned weight
/// values multiply signed activations directly.
pub struct QuantizedActivations {
    pub m: usize,
    pub k: usize,
    pub values: Vec<i8>,
    pub scales: Vec<f32>,
    pub corrections: Vec<i32>,
}

impl QuantizedActivations {
    /// Quantizes `x` (`m × k`, `k` a multiple of 32) for weights with `offset`.
    pub fn new(x: &[f32], m: usize, k: usize, offset: i32) -> Self {
        let blocks = m * k / BLOCK;
        let mut values = vec![0i8; m * k];
        let mut scales = vec![0f32; blocks];
        let mut corrections = vec![0i32; blocks];
        for (b, (src, dst)) in x.chunks_exact(BLOCK).zip(values.chunks_exact_mut(BLOCK)).enumerate() {
            let amax = src.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
            let mut sum = 0i32;
            for (q, v) in dst.iter_mut().zip(src) {
                // Nearest, ties to even: what ggml's SIMD quantizer does
                // (`_mm256_round_ps`), and a single vector instruction.
                *q = (v * inv).round_ties_even() as i8;
                sum += i32::from(*q);
            }
            // Stored at f16 precision, as ggml's Q8_0 does, so results match llama.cpp's.
            scales[b] = half::f16::from_f32(d).to_f32();
            corrections[b] = -offset * sum;
        }
        Self { m, k, values, scales, corrections }
    }

    pub fn blocks_per_row(&self) -> usize {
        self.k / BLOCK
    }
}
