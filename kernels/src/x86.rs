//! The block kernels with x86 SIMD, chosen at run time: 512-bit `vpdpbusd`
//! (AVX-512 VNNI), 256-bit `vpdpbusd` (AVX-VNNI) or AVX2's `vpmaddubsw`.
//!
//! Each micro-kernel keeps an `MR × NR` tile of accumulators in registers:
//! a weight block is decoded once and multiplied with `MR` activation rows.
//! The 512-bit one (prompts, four activation rows or more) reads weight rows
//! its task decoded once for all activation rows, takes two consecutive
//! blocks per instruction, and applies the scales as vectors, two blocks at
//! a time, instead of a scalar product and a broadcast per block and pair
//! of rows.

#![allow(unsafe_code)]

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::{BLOCK, BlockFormat, BlockMatrix, Level, QuantizedActivations};

const Q4_0: u8 = 0;
const Q5_0: u8 = 1;
const Q8_0: u8 = 2;

/// Weight rows one thread takes at a time: 16 rows of a 896-wide Q5_0 matrix
/// are ~10 KB, which stays in L1 while every activation row streams past.
const ROWS_PER_TASK: usize = 16;

/// How far ahead of the block being read to prefetch, in bytes: several
/// interleaved row streams defeat the hardware prefetcher on large matrices.
const PREFETCH_AHEAD: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    /// AVX-512 VNNI: 512-bit tiles, 256-bit (EVEX) rows.
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

/// Where one micro-kernel call reads and writes.
#[derive(Clone, Copy)]
struct Tile {
    /// First weight row of the tile.
    w: *const u8,
    row_bytes: usize,
    /// First activation row of the tile.
    values: *const i8,
    scales: *const f32,
    corrections: *const i32,
    k: usize,
    blocks: usize,
    /// For the 512-bit kernel: per activation row and pair of blocks, the
    /// two scales and corrections as the vector lanes take them.
    pair_scales: *const [f32; 16],
    pair_corrections: *const [i32; 16],
    pairs: usize,
    /// `out[i][j]` of the tile's first row and column.
    out: *mut f32,
    out_stride: usize,
}

macro_rules! micro_kernel {
    ($name:ident, $features:literal, $dot:ident) => {
        #[target_feature(enable = $features)]
        unsafe fn $name<const F: u8, const MR: usize, const NR: usize>(t: Tile) {
            unsafe {
                let bb = match F {
                    Q4_0 => BlockFormat::Q4_0.block_bytes(),
                    Q5_0 => BlockFormat::Q5_0.block_bytes(),
                    _ => BlockFormat::Q8_0.block_bytes(),
                };
                let mut acc = [[_mm256_setzero_ps(); NR]; MR];
                for b in 0..t.blocks {
                    let mut u = [_mm256_setzero_si256(); NR];
                    let mut dw = [0f32; NR];
                    for r in 0..NR {
                        let p = t.w.add(r * t.row_bytes + b * bb);
                        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_AHEAD).cast());
                        (dw[r], u[r]) = decode::<F>(p);
                    }
                    for i in 0..MR {
                        let a = _mm256_loadu_si256(t.values.add(i * t.k + b * BLOCK).cast());
                        let corr = _mm256_zextsi128_si256(_mm_cvtsi32_si128(*t.corrections.add(i * t.blocks + b)));
                        let da = *t.scales.add(i * t.blocks + b);
                        for r in 0..NR {
                            let dp = $dot::<F>(corr, u[r], a);
                            acc[i][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), _mm256_set1_ps(dw[r] * da), acc[i][r]);
                        }
                    }
                }
                for i in 0..MR {
                    for r in 0..NR {
                        *t.out.add(i * t.out_stride + r) = hsum(acc[i][r]);
                    }
                }
            }
        }
    };
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

micro_kernel!(tile_avxvnni, "avx2,fma,avxvnni", dot_avxvnni);
micro_kernel!(tile_avx512vnni, "avx2,fma,avx512vnni,avx512vl", dot_avx512vnni);
micro_kernel!(tile_avx2, "avx2,fma", dot_avx2);
row_kernel!(row_avxvnni, "avx2,fma,avxvnni", dot_avxvnni);
row_kernel!(row_avx512vnni, "avx2,fma,avx512vnni,avx512vl", dot_avx512vnni);
row_kernel!(row_avx2, "avx2,fma", dot_avx2);

/// Two consecutive blocks of one weight row, `b` and `b + 1`, in one
/// register; with `pair == false` only block `b`, the upper half zero.
#[inline(always)]
unsafe fn decode_pair<const F: u8>(p: *const u8, bb: usize, pair: bool) -> (__m512, __m512i) {
    unsafe {
        let (d0, u0) = decode::<F>(p);
        if !pair {
            return (_mm512_set1_ps(d0), _mm512_zextsi256_si512(u0));
        }
        let (d1, u1) = decode::<F>(p.add(bb));
        (halves(d0, d1), _mm512_inserti64x4::<1>(_mm512_castsi256_si512(u0), u1))
    }
}

/// `lo` in the lower eight lanes, `hi` in the upper eight.
#[inline(always)]
unsafe fn halves(lo: f32, hi: f32) -> __m512 {
    unsafe { _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(lo), _mm512_set1_ps(hi)) }
}

/// A task's weight rows decoded once for the 512-bit kernel: per row and
/// pair of blocks, the 64 unsigned values and then the two blocks' scales
/// as the lanes take them (block `2p` in lanes 0–7, `2p + 1` in 8–15).
/// Decoding a Q5_0 block costs more than multiplying it with one
/// activation row, so all of a prompt's rows read the decoded copy.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Lanes([u8; 64]);

thread_local! {
    static DECODED: std::cell::RefCell<Vec<Lanes>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Decodes `rows` weight rows from `w` into `out`, row after row.
///
/// # Safety
/// `w` must address `rows` rows of `blocks` blocks of format `F`, `row_bytes` apart.
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn decode_rows<const F: u8>(w: *const u8, rows: usize, row_bytes: usize, blocks: usize, out: &mut Vec<Lanes>) {
    unsafe {
        let bb = match F {
            Q4_0 => BlockFormat::Q4_0.block_bytes(),
            Q5_0 => BlockFormat::Q5_0.block_bytes(),
            _ => BlockFormat::Q8_0.block_bytes(),
        };
        let pairs = blocks.div_ceil(2);
        out.clear();
        out.resize(rows * pairs * 2, Lanes([0; 64]));
        let dst = out.as_mut_ptr().cast::<__m512i>();
        for r in 0..rows {
            for p in 0..pairs {
                let src = w.add(r * row_bytes + 2 * p * bb);
                _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(PREFETCH_AHEAD).cast());
                let (dw, u) = decode_pair::<F>(src, bb, 2 * p + 1 < blocks);
                let at = dst.add((r * pairs + p) * 2);
                _mm512_store_si512(at, u);
                _mm512_store_si512(at.add(1), _mm512_castps_si512(dw));
            }
        }
    }
}

/// The 512-bit micro-kernel over decoded rows (`w`, `NR` of them): per pair
/// of blocks one `vpdpbusd` per tile entry, whose lane `l` sums four
/// products of block `b + l / 8`, started at that block's offset correction
/// and scaled by a vector of the two blocks' activation scales and then of
/// their weight scales.
///
/// # Safety
/// `t` must address `MR` activation rows with their pair vectors and the
/// outputs, `w` `NR` decoded rows of `t.pairs` pairs each.
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_avx512<const MR: usize, const NR: usize>(t: Tile, w: *const Lanes) {
    unsafe {
        let w = w.cast::<__m512i>();
        let mut acc = [[_mm512_setzero_ps(); NR]; MR];
        for p in 0..t.pairs {
            let b = 2 * p;
            let mut u = [_mm512_setzero_si512(); NR];
            let mut dw = [_mm512_setzero_ps(); NR];
            for r in 0..NR {
                let at = w.add((r * t.pairs + p) * 2);
                u[r] = _mm512_load_si512(at);
                dw[r] = _mm512_castsi512_ps(_mm512_load_si512(at.add(1)));
            }
            for (i, acc) in acc.iter_mut().enumerate() {
                let values = t.values.add(i * t.k + b * BLOCK);
                // A lone last block must not read past the row's end.
                let a = if b + 1 < t.blocks {
                    _mm512_loadu_si512(values.cast())
                } else {
                    _mm512_maskz_loadu_epi8(u32::MAX.into(), values)
                };
                let corr = _mm512_loadu_si512(t.pair_corrections.add(i * t.pairs + p).cast());
                let da = _mm512_loadu_ps(t.pair_scales.add(i * t.pairs + p).cast());
                for ((acc, &u), &dw) in acc.iter_mut().zip(&u).zip(&dw) {
                    let dp = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(corr, u, a));
                    *acc = _mm512_fmadd_ps(_mm512_mul_ps(dp, da), dw, *acc);
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            for (r, &acc) in acc.iter().enumerate() {
                *t.out.add(i * t.out_stride + r) = _mm512_reduce_add_ps(acc);
            }
        }
    }
}

/// Each activation row's scales and corrections by pair of blocks, laid out
/// as the 512-bit kernel's lanes take them: block `2p` in lanes 0–7 (its
/// correction in lane 0), block `2p + 1` in lanes 8–15 (lane 8), zero where
/// a row's last pair has one block.
fn pair_vectors(a: &QuantizedActivations) -> (Vec<[f32; 16]>, Vec<[i32; 16]>) {
    let blocks = a.blocks_per_row();
    let pairs = blocks.div_ceil(2);
    let mut scales = vec![[0f32; 16]; a.m * pairs];
    let mut corrections = vec![[0i32; 16]; a.m * pairs];
    for i in 0..a.m {
        for b in 0..blocks {
            let (at, half) = (i * pairs + b / 2, (b % 2) * 8);
            scales[at][half..half + 8].fill(a.scales[i * blocks + b]);
            corrections[at][half] = a.corrections[i * blocks + b];
        }
    }
    (scales, corrections)
}

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

/// Runs the `MR × NR` micro-kernel of the detected instruction set.
///
/// # Safety
/// `t` must address `MR` activation rows, `NR` weight rows and the matching outputs.
unsafe fn tile<const F: u8, const MR: usize, const NR: usize>(isa: Isa, t: Tile) {
    unsafe {
        match isa {
            Isa::AvxVnni => tile_avxvnni::<F, MR, NR>(t),
            Isa::Avx512 | Isa::Avx512Vnni => tile_avx512vnni::<F, MR, NR>(t),
            Isa::Avx2 | Isa::None => tile_avx2::<F, MR, NR>(t),
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
    let (n, m, blocks) = (w.rows, a.m, a.blocks_per_row());
    let row_bytes = blocks * w.format.block_bytes();
    // Four activation rows or more take the 512-bit kernel, over weight
    // rows each task decodes once.
    let wide = isa == Isa::Avx512 && m >= 4;
    let pairs = blocks.div_ceil(2);
    let (pair_scales, pair_corrections) = if wide { pair_vectors(a) } else { (Vec::new(), Vec::new()) };
    let base = Tile {
        w: w.data.as_ptr(),
        row_bytes,
        values: a.values.as_ptr(),
        scales: a.scales.as_ptr(),
        corrections: a.corrections.as_ptr(),
        k: a.k,
        blocks,
        pair_scales: pair_scales.as_ptr(),
        pair_corrections: pair_corrections.as_ptr(),
        pairs,
        out: out.as_mut_ptr(),
        out_stride: n,
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
                // Only the 512-bit kernel reads these, and only when they were laid out.
                pair_scales: base.pair_scales.wrapping_add(i * pairs),
                pair_corrections: base.pair_corrections.wrapping_add(i * pairs),
                out: base.out.add(i * n + j),
                ..base
            }
        }
    };
    let task = |rows: std::ops::Range<usize>| {
        let (j0, j1) = (rows.start * ROWS_PER_TASK, (rows.end * ROWS_PER_TASK).min(n));
        // SAFETY: `at` addresses only rows i < m and columns j0 ≤ j < j1 ≤ n.
        unsafe {
            let mut i = 0;
            if wide {
                i = m - m % 4;
                DECODED.with_borrow_mut(|decoded| {
                    decode_rows::<F>(at(0, j0).w, j1 - j0, row_bytes, blocks, decoded);
                    let rows = |j: usize| decoded.as_ptr().add((j - j0) * pairs * 2);
                    for i in (0..i).step_by(4) {
                        let mut j = j0;
                        while j + 4 <= j1 {
                            tile_avx512::<4, 4>(at(i, j), rows(j));
                            j += 4;
                        }
                        while j < j1 {
                            tile_avx512::<4, 1>(at(i, j), rows(j));
                            j += 1;
                        }
                    }
                });
            }
            while i + 4 <= m {
                let mut j = j0;
                while j + 2 <= j1 {
                    tile::<F, 4, 2>(isa, at(i, j));
                    j += 2;
                }
                if j < j1 {
                    tile::<F, 4, 1>(isa, at(i, j));
                }
                i += 4;
            }
            while i < m {
                for j in j0..j1 {
                    row::<F>(isa, at(i, j));
                }
                i += 1;
            }
        }
    };
    candle_core::utils::barrier_pool().execute_chunked(n.div_ceil(ROWS_PER_TASK), task);
}
