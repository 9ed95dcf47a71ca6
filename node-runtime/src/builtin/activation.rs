//! The gated feed-forward activation, `act(gate) · up`, in one pass.
//!
//! SiLU is `x·σ(x)` and Gemma's tanh-approximated GELU is `x·σ(2·√(2/π)·(x + 0.044715·x³))`,
//! so both are `x·σ(z)`. On the CPU a branch-free exponential lets the
//! compiler vectorize the loop (libm's `expf`/`tanhf` per element cost
//! Gemma a tenth of its prompt time).

use candle_core::{Device, Storage, Tensor};

use super::arch::Activation;

/// `act(gate) * up`, elementwise; both `[tokens, ffn]`.
///
/// # Errors
/// On mismatched shapes or a tensor error.
pub fn gated(gate: &Tensor, up: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
    if !gate.device().is_cpu() {
        let activated = match act {
            Activation::Silu => candle_nn::ops::silu(gate)?,
            Activation::GeluTanh => gate.gelu()?,
        };
        return activated * up;
    }
    if gate.shape() != up.shape() {
        candle_core::bail!("gate {:?} and up {:?} differ in shape", gate.shape(), up.shape());
    }
    let (gate, up) = (gate.contiguous()?, up.contiguous()?);
    let n = gate.elem_count();
    let out = {
        let (gs, gl) = gate.storage_and_layout();
        let (us, ul) = up.storage_and_layout();
        let (Storage::Cpu(g), Storage::Cpu(u)) = (&*gs, &*us) else {
            candle_core::bail!("expected CPU tensors");
        };
        let g = &g.as_slice::<f32>()?[gl.start_offset()..gl.start_offset() + n];
        let u = &u.as_slice::<f32>()?[ul.start_offset()..ul.start_offset() + n];
        match act {
            Activation::Silu => g.iter().zip(u).map(|(&x, &y)| x * sigmoid(x) * y).collect::<Vec<f32>>(),
            Activation::GeluTanh => g.iter().zip(u).map(|(&x, &y)| gelu_tanh(x) * y).collect(),
        }
    };
    Tensor::from_vec(out, gate.shape(), &Device::Cpu)
}

/// GELU with the tanh approximation, as `x·σ(2y)`.
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    x * sigmoid(2.0 * SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x))
}

#[inline(always)]
pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + exp(-z))
}

/// `eᶻ` to within a few ulp for |z| < 88, without branches: `2ⁿ·p(r)`
/// with `z = n·ln2 + r` and a degree-6 polynomial on |r| ≤ ln2/2.
#[inline(always)]
pub fn exp(z: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let z = z.clamp(-87.0, 88.0);
    let n = (z * std::f32::consts::LOG2_E).round_ties_even();
    let r = z - n * LN2_HI - n * LN2_LO;
    let p =
        1.0 + r * (1.0 + r * (0.5 + r * (0.166_666_67 + r * (0.041_666_46 + r * (0.008_333_452 + r * 0.001_390_45)))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_over_the_range_that_matters() {
        let mut worst = 0f32;
        for i in -8000..=8000 {
            let z = i as f32 * 0.01;
            worst = worst.max(((exp(z) - z.exp()) / z.exp()).abs());
        }
        assert!(worst < 2e-6, "{worst}");
    }

    #[test]
    fn activations_match_their_textbook_definitions() {
        for i in -200..=200 {
            let x = i as f32 * 0.05;
            let gelu = 0.5 * x * (1.0 + ((2.0f32 / std::f32::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh());
            assert!((gelu_tanh(x) - gelu).abs() < 1e-5, "gelu({x})");
            assert!((x * sigmoid(x) - x / (1.0 + (-x).exp())).abs() < 1e-5, "silu({x})");
        }
        assert!(gelu_tanh(-100.0).abs() < 1e-30);
        assert!((gelu_tanh(100.0) - 100.0).abs() < 1e-3);
    }

    #[test]
    fn the_cpu_path_matches_candles_ops() {
        let gate =
            Tensor::from_vec((0..64).map(|i| (i as f32 - 32.0) * 0.2).collect::<Vec<_>>(), (4, 16), &Device::Cpu)
                .unwrap();
        let up =
            Tensor::from_vec((0..64).map(|i| (i as f32).sin()).collect::<Vec<_>>(), (4, 16), &Device::Cpu).unwrap();
        for (act, reference) in [
            (Activation::Silu, (candle_nn::ops::silu(&gate).unwrap() * &up).unwrap()),
            (Activation::GeluTanh, (gate.gelu().unwrap() * &up).unwrap()),
        ] {
            let ours = gated(&gate, &up, act).unwrap();
            let diff = (ours - reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-5, "{act:?}: {diff}");
        }
    }
}
