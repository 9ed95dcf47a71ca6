//! The block kernels with x86 SIMD, chosen at run time: 512-bit `vpdpbusd`
//! (AVX-512 VNNI), 256-bit `vpdpbusd` (AVX-VNNI, or AVX-512 VNNI on 256-bit
//! vectors) or AVX2's `vpmaddubsw`.
//!
//! One to three activation rows (decoding) take the row kernels here, which
//! stream each weight row once, decoding its blocks as they go. Prompts, four
//! rows or more, take [`interleaved`]: weight rows decoded once per call into
//! a layout where one instruction advances many outputs.

#![allow(unsafe_code)]

mod interleaved;

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::{BLOCK, BlockFormat, BlockMatrix, Level, QuantizedActivations};

const Q4_0: u8 = 0;
const Q5_0: u8 = 1;
const Q8_0: u8 = 2;

/// Weight rows a row-kernel task takes at a time: 16 rows of a 896-wide Q5_0 matrix
/// are ~10 KB, which stays in L1 while every activation row streams past.
const ROWS_PER_TASK: usize = 16;

/// How far ahead of the block being read to prefetch, in bytes: several
/// interleaved row streams defeat the hardware prefetcher on large matrices.
const PREFETCH_AHEAD: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    /// AVX-512 VNNI: 512-bit vectors for prompts, 256-bit (EVEX) for rows.
    Avx512,
    AvxVnni,
    /// AVX-512 VNNI on 256-bit vectors only.
    Avx512Vnni,
    Avx2,
    None,
}

fn has_avx512() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        if avx2 && has_avx512() {
            Isa::Avx512
        } else if avx2 && is_x86_feature_detected!("avxvnni") {
            Isa::AvxVnni
        } else if avx2 && is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl") {
            Isa::Avx512Vnni
        } else if avx2 {
            Isa::Avx2
        } else {
            Isa::None
        }
    })
}

pub fn level() -> Level {
    match isa() {
        Isa::Avx512 => Level::Vnni512,
        Isa::AvxVnni | Isa::Avx512Vnni => Level::Vnni,
        Isa::Avx2 => Level::Avx2,
        Isa::None => Level::Scalar,
    }
}

/// The scale and 32 unsigned values of the block at `p`.
#[inline(always)]
unsafe fn decode<const F: u8>(p: *const u8) -> (f32, __m256i) {
    unsafe {
        let d = half::f16::from_bits(u16::from_le_bytes([*p, *p.add(1)])).to_f32();
        let mask = _mm_set1_epi8(0x0F);
        let u = match F {
            Q4_0 => {
                let q = _mm_loadu_si128(p.add(2).cast());
                _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), mask), _mm_and_si128(q, mask))
            }
            Q5_0 => {
                let qh = u32::from_le_bytes([*p.add(2), *p.add(3), *p.add(4), *p.add(5)]);
                let q = _mm_loadu_si128(p.add(6).cast());
                let nibbles = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), mask), _mm_and_si128(q, mask));
                // Byte j of `bits` is 0xFF where bit j of qh is set.
                let spread = _mm256_shuffle_epi8(
                    _mm256_set1_epi32(qh as i32),
                    _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0),
                );
                let bits = _mm256_cmpeq_epi8(
                    _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe)),
                    _mm256_set1_epi64x(-1),
                );
                _mm256_or_si256(nibbles, _mm256_and_si256(bits, _mm256_set1_epi8(0x10)))
            }
            _ => _mm256_xor_si256(_mm256_loadu_si256(p.add(2).cast()), _mm256_set1_epi8(0x80u8 as i8)),
        };
        (d, u)
    }
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }
}

#[inline(always)]
unsafe fn dot_avxvnni<const F: u8>(acc: __m256i, u: __m256i, a: __m256i) -> __m256i {
    unsafe { _mm256_dpbusd_avx_epi32(acc, u, a) }
}

#[inline(always)]
unsafe fn dot_avx512vnni<const F: u8>(acc: __m256i, u: __m256i, a: __m256i) -> __m256i {
    unsafe { _mm256_dpbusd_epi32(acc, u, a) }
}

/// `acc + Σ u·a` with AVX2's `vpmaddubsw`, which saturates a pair's sum at
/// ±32767. Q4_0's and Q5_0's values (below 32) never reach it. Q8_0's offset
/// values (up to 255) would, so for Q8_0 the signed weights `w = u - 128` are
/// multiplied as `|w| · (a · sign w)`, as ggml does: with activations in
/// ±127 a pair is at most 2 · 128 · 127 = 32512, exact. `Σ w·a` equals
/// `acc + Σ u·a` because `acc` holds the block's correction `-128 · Σ a`.
#[inline(always)]
unsafe fn dot_avx2<const F: u8>(acc: __m256i, u: __m256i, a: __m256i) -> __m256i {
    unsafe {
        let ones = _mm256_set1_epi16(1);
        if F == Q8_0 {
            let w = _mm256_xor_si256(u, _mm256_set1_epi8(0x80u8 as i8));
            _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(a, w)), ones)
        } else {
            _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), ones))
        }
    }
}

/// Where one row kernel call reads and writes.
#[derive(Clone, Copy)]
struct Tile {
    /// The weight row.
    w: *const u8,
    /// The activation row.
    values: *const i8,
    scales: *const f32,
    corrections: *const i32,
    blocks: usize,
    /// `out[i][j]` of that activation row `i` and weight row `j`.
    out: *mut f32,
}

/// One activation row times one weight row, with four independent
/// accumulators so consecutive blocks do not wait on each other. Decoding
/// (one activation row) streams each weight row once, front to back, which
/// the hardware prefetcher follows best.
macro_rules! row_kernel {
    ($name:ident, $features:literal, $dot:ident) => {
        #[target_feature(enable = $features)]
        unsafe fn $name<const F: u8>(t: Tile) {
            unsafe {
                let bb = match F {
                    Q4_0 => BlockFormat::Q4_0.block_bytes(),
                    Q5_0 => BlockFormat::Q5_0.block_bytes(),
                    _ => BlockFormat::Q8_0.block_bytes(),
                };
                let mut acc = [_mm256_setzero_ps(); 4];
                for b in 0..t.blocks {
                    let p = t.w.add(b * bb);
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_AHEAD).cast());
                    let (dw, u) = decode::<F>(p);
                    let a = _mm256_loadu_si256(t.values.add(b * BLOCK).cast());
                    let corr = _mm256_zextsi128_si256(_mm_cvtsi32_si128(*t.corrections.add(b)));
                    let dp = $dot::<F>(corr, u, a);
                    let s = _mm256_set1_ps(dw * *t.scales.add(b));
                    acc[b % 4] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), s, acc[b % 4]);
                }
                let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
                *t.out = hsum(sum);
            }
        }
    };
}

row_kernel!(row_avxvnni, "avx2,fma,avxvnni", dot_avxvnni);
row_kernel!(row_avx512vnni, "avx2,fma,avx512vnni,avx512vl", dot_avx512vnni);
row_kernel!(row_avx2, "avx2,fma", dot_avx2);

/// One row times one row with the detected instruction set.
///
/// # Safety
/// `t` must address one activation row, one weight row and one output.
unsafe fn row<const F: u8>(isa: Isa, t: Tile) {
    unsafe {
        match isa {
            Isa::AvxVnni => row_avxvnni::<F>(t),
            Isa::Avx512 | Isa::Avx512Vnni => row_avx512vnni::<F>(t),
            Isa::Avx2 | Isa::None => row_avx2::<F>(t),
        }
    }
}

// SAFETY: a Tile only points into buffers that outlive the parallel region
// of `run`, and tasks write disjoint output columns.
unsafe impl Send for Tile {}
unsafe impl Sync for Tile {}

pub fn matmul(w: &BlockMatrix, a: &QuantizedActivations, out: &mut [f32]) {
    matmul_with(isa(), w, a, out);
}

/// Every instruction set this CPU has, for tests.
#[cfg(test)]
pub fn available_isas() -> Vec<&'static str> {
    let has = |f: &str| match f {
        "avx512" => has_avx512(),
        "avxvnni" => is_x86_feature_detected!("avxvnni"),
        "avx512vnni" => is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl"),
        _ => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
    };
    ["avx512", "avxvnni", "avx512vnni", "avx2"].into_iter().filter(|f| has(f) && has("avx2")).collect()
}

#[cfg(test)]
pub fn matmul_forced(isa_name: &str, w: &BlockMatrix, a: &QuantizedActivations, out: &mut [f32]) {
    let isa = match isa_name {
        "avx512" => Isa::Avx512,
        "avxvnni" => Isa::AvxVnni,
        "avx512vnni" => Isa::Avx512Vnni,
        _ => Isa::Avx2,
    };
    matmul_with(isa, w, a, out);
}

fn matmul_with(isa: Isa, w: &BlockMatrix, a: &QuantizedActivations, out: &mut [f32]) {
    assert_eq!((a.k, out.len()), (w.cols, a.m * w.rows));
    assert!(isa != Isa::None);
    match w.format {
        BlockFormat::Q4_0 => run::<Q4_0>(isa, w, a, out),
        BlockFormat::Q5_0 => run::<Q5_0>(isa, w, a, out),
        BlockFormat::Q8_0 => run::<Q8_0>(isa, w, a, out),
    }
}

fn run<const F: u8>(isa: Isa, w: &BlockMatrix, a: &QuantizedActivations, out: &mut [f32]) {
    // Prompts (four activation rows or more): weight rows decoded once, interleaved.
    if a.m >= 4 {
        return interleaved::matmul::<F>(isa, w, a, out);
    }
    let (n, m, blocks) = (w.rows, a.m, a.blocks_per_row());
    let row_bytes = blocks * w.format.block_bytes();
    let base = Tile {
        w: w.data.as_ptr(),
        values: a.values.as_ptr(),
        scales: a.scales.as_ptr(),
        corrections: a.corrections.as_ptr(),
        blocks,
        out: out.as_mut_ptr(),
    };
    let at = move |i: usize, j: usize| {
        // Capture the whole Tile (Sync), not its raw-pointer fields one by one.
        let base = base;
        // SAFETY: i < m and j < n, so every offset stays inside the buffers the
        // asserts above sized; tasks cover disjoint column ranges.
        unsafe {
            Tile {
                w: base.w.add(j * row_bytes),
                values: base.values.add(i * a.k),
                scales: base.scales.add(i * blocks),
                corrections: base.corrections.add(i * blocks),
                out: base.out.add(i * n + j),
                blocks,
            }
        }
    };
    let task = |rows: std::ops::Range<usize>| {
        let (j0, j1) = (rows.start * ROWS_PER_TASK, (rows.end * ROWS_PER_TASK).min(n));
        // SAFETY: `at` addresses only rows i < m and columns j0 ≤ j < j1 ≤ n.
        unsafe {
            for i in 0..m {
                for j in j0..j1 {
                    row::<F>(isa, at(i, j));
                }
            }
        }
    };
    candle_core::utils::barrier_pool().execute_chunked(n.div_ceil(ROWS_PER_TASK), task);
}
