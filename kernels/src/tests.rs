use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn random(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn quantized(rng: &mut StdRng, dtype: GgmlDType, rows: usize, cols: usize) -> QTensor {
    let w = Tensor::from_vec(random(rng, rows * cols), (rows, cols), &Device::Cpu).unwrap();
    QTensor::quantize(&w, dtype).unwrap()
}

fn max_relative_error(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale
}

const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 32),
    (1, 5, 64),
    (1, 37, 896),
    (2, 3, 64),
    (3, 17, 96),
    (4, 8, 32),
    (5, 33, 640),
    (9, 18, 128),
    // An odd number of blocks: the 512-bit kernel's last block is alone.
    (8, 12, 96),
    (64, 20, 896),
];

#[cfg(target_arch = "x86_64")]
#[test]
fn every_simd_kernel_on_this_cpu_agrees_with_the_scalar_definition() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut compared = 0;
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q5_0, GgmlDType::Q8_0] {
        let format = BlockFormat::from_ggml(dtype).unwrap();
        for &(m, n, k) in SHAPES {
            let q = quantized(&mut rng, dtype, n, k);
            let w = BlockMatrix::from_raw(format, n, k, q.data().unwrap().into_owned());
            let x = random(&mut rng, m * k);
            let mut slow = vec![0f32; m * n];
            w.matmul_reference(&x, m, &mut slow);
            let acts = QuantizedActivations::new(&x, m, k, format.offset());
            for isa in x86::available_isas() {
                let mut fast = vec![0f32; m * n];
                x86::matmul_forced(isa, &w, &acts, &mut fast);
                let err = max_relative_error(&fast, &slow);
                assert!(err < 1e-5, "{isa} {dtype:?} {m}x{n}x{k}: {err}");
                compared += 1;
            }
        }
    }
    // The build targets x86-64-v3, so AVX2 at least is always there.
    assert!(compared >= 3 * SHAPES.len(), "only {compared} SIMD comparisons ran");
}

#[test]
fn block_kernels_agree_with_candle() {
    let mut rng = StdRng::seed_from_u64(6);
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q5_0, GgmlDType::Q8_0] {
        // candle's own Q5_0 path asserts an even number of blocks per row.
        for &(m, n, k) in SHAPES.iter().filter(|(_, _, k)| (k / BLOCK).is_multiple_of(2)) {
            let q = quantized(&mut rng, dtype, n, k);
            let raw = q.data().unwrap().into_owned();
            let w = BlockMatrix::from_raw(BlockFormat::from_ggml(dtype).unwrap(), n, k, raw);
            let x = random(&mut rng, m * k);
            let mut ours = vec![0f32; m * n];
            w.matmul_reference(&x, m, &mut ours);
            let xt = Tensor::from_vec(x, (m, k), &Device::Cpu).unwrap();
            let theirs = QMatMul::from_qtensor(q).unwrap().forward(&xt).unwrap().flatten_all().unwrap();
            let err = max_relative_error(&ours, &theirs.to_vec1::<f32>().unwrap());
            // candle rounds activation ties away from zero, these kernels (like
            // ggml's SIMD quantizer) to even: a tie moves one value by one step.
            assert!(err < 1e-3, "{dtype:?} {m}x{n}x{k}: {err}");
        }
    }
}

#[test]
fn rows_dequantize_as_candle_dequantizes_them() {
    let mut rng = StdRng::seed_from_u64(8);
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q5_0, GgmlDType::Q8_0] {
        let q = quantized(&mut rng, dtype, 5, 96);
        let dense = q.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        let w = BlockMatrix::from_raw(BlockFormat::from_ggml(dtype).unwrap(), 5, 96, q.data().unwrap().into_owned());
        for (r, expected) in dense.iter().enumerate() {
            let mut row = vec![0f32; 96];
            w.dequantize_row(r, &mut row);
            assert_eq!(&row, expected, "{dtype:?} row {r}");
        }
    }
}

#[test]
fn the_scalar_definition_matches_dequantized_weights() {
    let mut rng = StdRng::seed_from_u64(7);
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q5_0, GgmlDType::Q8_0] {
        let (m, n, k) = (3, 7, 128);
        let q = quantized(&mut rng, dtype, n, k);
        let dense = q.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        let w = BlockMatrix::from_raw(BlockFormat::from_ggml(dtype).unwrap(), n, k, q.data().unwrap().into_owned());
        let x = random(&mut rng, m * k);
        let mut ours = vec![0f32; m * n];
        w.matmul_reference(&x, m, &mut ours);
        let exact: Vec<f32> = (0..m)
            .flat_map(|i| (0..n).map(|j| (0..k).map(|c| x[i * k + c] * dense[j][c]).sum::<f32>()).collect::<Vec<_>>())
            .collect();
        // Only the 8-bit rounding of the activations separates the two.
        let err = max_relative_error(&ours, &exact);
        assert!(err < 0.02, "{dtype:?}: {err}");
    }
}

#[test]
#[ignore = "timing probe"]
#[allow(clippy::disallowed_types)]
fn probe_decode_bandwidth() {
    let mut rng = StdRng::seed_from_u64(9);
    for (dtype, n, k) in [(GgmlDType::Q5_0, 4864, 896), (GgmlDType::Q8_0, 32768, 896), (GgmlDType::Q5_0, 896, 4864)] {
        let q = quantized(&mut rng, dtype, n, k);
        let w = BlockMatrix::from_qtensor(&q).unwrap();
        let x = random(&mut rng, k);
        let mut out = vec![0f32; n];
        for m in [1usize, 64] {
            let x: Vec<f32> = x.iter().cycle().take(m * k).copied().collect();
            let mut out = vec![0f32; m * n];
            w.matmul(&x, m, &mut out);
            let t = std::time::Instant::now();
            let reps = if m == 1 { 200 } else { 10 };
            for _ in 0..reps {
                w.matmul(&x, m, &mut out);
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            eprintln!(
                "{dtype:?} {n}x{k} m={m}: {:.3} ms, {:.1} GB/s, {:.1} GMAC/s",
                s * 1e3,
                w.bytes() as f64 / s / 1e9,
                (m * n * k) as f64 / s / 1e9
            );
        }
        let _ = &mut out;
        let qm = QMatMul::from_qtensor(q).unwrap();
        let xt = Tensor::from_vec(x.clone(), (1, k), &Device::Cpu).unwrap();
        qm.forward(&xt).unwrap();
        let t = std::time::Instant::now();
        for _ in 0..200 {
            qm.forward(&xt).unwrap();
        }
        let s = t.elapsed().as_secs_f64() / 200.0;
        eprintln!("   candle m=1: {:.3} ms, {:.1} GB/s", s * 1e3, w.bytes() as f64 / s / 1e9);
    }
}

/// Q8_0's extremes: a weight of -128 (which ggml's quantizer never writes
/// but a file may hold) against activations of ±127, where a pair of
/// products reaches 2 · 128 · 127 and AVX2's `vpmaddubsw` would saturate on
/// anything less careful; for one activation row and for a prompt's five.
#[cfg(target_arch = "x86_64")]
#[test]
fn q8_0_extremes_are_exact_on_every_simd_kernel() {
    for m in [1, 5] {
        q8_0_extremes_are_exact(m);
    }
}

#[cfg(target_arch = "x86_64")]
fn q8_0_extremes_are_exact(m: usize) {
    let (n, k) = (3, 64);
    let one = half::f16::from_f32(1.0).to_le_bytes();
    let mut raw = Vec::new();
    for (row, value) in [-128i8, 127, -127].into_iter().enumerate() {
        for block in 0..k / BLOCK {
            raw.extend_from_slice(&one);
            // Alternate signs inside the second block so pairs mix them.
            raw.extend((0..BLOCK).map(|j| if block == 1 && j % 3 == row { value.wrapping_neg() } else { value } as u8));
        }
    }
    let w = BlockMatrix::from_raw(BlockFormat::Q8_0, n, k, raw);
    let x: Vec<f32> = (0..m * k).map(|i| if (i / 2) % 2 == 0 { 1.0 } else { -1.0 }).collect();
    let mut slow = vec![0f32; m * n];
    w.matmul_reference(&x, m, &mut slow);
    let acts = QuantizedActivations::new(&x, m, k, BlockFormat::Q8_0.offset());
    let isas = x86::available_isas();
    assert!(!isas.is_empty(), "the build targets x86-64-v3, so AVX2 at least is there");
    for isa in isas {
        let mut fast = vec![0f32; m * n];
        x86::matmul_forced(isa, &w, &acts, &mut fast);
        assert_eq!(fast, slow, "{isa}, {m} rows");
    }
}

/// CPU time this process has used in user mode: unlike wall time, it does
/// not count while another process has the cores.
fn user_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes the struct it is given.
    #[allow(unsafe_code)]
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    usage.ru_utime.tv_sec as f64 + usage.ru_utime.tv_usec as f64 * 1e-6
}

/// Prefill's matrix products (64 activation rows) with each instruction set
/// this CPU has, one after the other in the same run: wall time, and CPU
/// time over all threads (steadier on a shared machine).
#[cfg(target_arch = "x86_64")]
#[test]
#[ignore = "timing probe"]
#[allow(clippy::disallowed_types)]
fn probe_prefill_by_instruction_set() {
    let mut rng = StdRng::seed_from_u64(10);
    for (dtype, n, k) in [(GgmlDType::Q5_0, 4864, 896), (GgmlDType::Q5_0, 896, 4864), (GgmlDType::Q8_0, 2048, 640)] {
        let q = quantized(&mut rng, dtype, n, k);
        let w = BlockMatrix::from_qtensor(&q).unwrap();
        let m = 64;
        let x = random(&mut rng, m * k);
        let acts = QuantizedActivations::new(&x, m, k, w.format().offset());
        let mut out = vec![0f32; m * n];
        for isa in x86::available_isas() {
            x86::matmul_forced(isa, &w, &acts, &mut out);
            let reps = 40;
            let (t, cpu) = (std::time::Instant::now(), user_cpu_seconds());
            for _ in 0..reps {
                x86::matmul_forced(isa, &w, &acts, &mut out);
            }
            let s = t.elapsed().as_secs_f64() / f64::from(reps);
            let c = (user_cpu_seconds() - cpu) / f64::from(reps);
            let macs = (m * n * k) as f64;
            eprintln!(
                "{dtype:?} {n}x{k} m={m} {isa}: {:.3} ms ({:.1} GMAC/s), CPU {:.3} ms ({:.1} GMAC per CPU-second)",
                s * 1e3,
                macs / s / 1e9,
                c * 1e3,
                macs / c / 1e9
            );
        }
    }
}
