//! Prompts: sixteen weight rows interleaved so that one 512-bit `vpdpbusd`
//! advances sixteen outputs at once (AVX-512 VNNI), or two 256-bit dot
//! products eight each (AVX-VNNI, AVX2).
//!
//! Each task decodes its weight rows once, sixteen at a time, into a buffer
//! where block `b` is eight vectors of four values from each of the sixteen
//! rows (lane `r` holds row `r`), then the rows' sixteen scales. A block of
//! an activation row is then eight `vpdpbusd` with its four-value groups
//! broadcast, one integer sum per row in each lane, and a single scaling per
//! block for all sixteen rows; the outputs come out as vectors, with no
//! horizontal sums. Decoding costs about as much as one row's products, and
//! every activation row of the prompt reuses it.

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::{
    BLOCK, BlockFormat, BlockMatrix, Isa, PREFETCH_AHEAD, Q4_0, Q5_0, Q8_0, QuantizedActivations, decode, dot_avx2,
    dot_avx512vnni, dot_avxvnni,
};

/// Weight rows per interleaved group: one per 32-bit lane.
const GROUP: usize = 16;
/// Vectors per block in the buffer: eight of values, one of scales.
const PER_BLOCK: usize = BLOCK / 4 + 1;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Lanes([u8; 64]);

thread_local! {
    static GROUPS: RefCell<Vec<Lanes>> = const { RefCell::new(Vec::new()) };
}

/// `out[i][j] = Σ_c x[i][c] · w[j][c]` for prompts (`a.m` ≥ 1; worth it from
/// about four rows), with the weight rows decoded per task.
///
/// # Panics
/// When `isa` is [`Isa::None`].
pub fn matmul<const F: u8>(isa: Isa, w: &BlockMatrix, a: &QuantizedActivations, out: &mut [f32]) {
    assert!(isa != Isa::None);
    let (n, blocks) = (w.rows, a.blocks_per_row());
    let row_bytes = blocks * w.format.block_bytes();
    let (weights, values, out_addr) = (w.data.as_ptr() as usize, a.values.as_ptr() as usize, out.as_mut_ptr() as usize);
    let task = |groups: std::ops::Range<usize>| {
        GROUPS.with_borrow_mut(|buffer| {
            for g in groups {
                let (j0, rows) = (g * GROUP, GROUP.min(n - g * GROUP));
                // SAFETY: rows j0..j0 + rows < n of the matrix; tasks write
                // disjoint output columns j0..j0 + rows of every activation row.
                unsafe {
                    let first = (weights as *const u8).add(j0 * row_bytes);
                    decode_group::<F>(first, rows, row_bytes, blocks, buffer);
                    let tile = Tile {
                        w: buffer.as_ptr(),
                        values: values as *const i8,
                        scales: a.scales.as_ptr(),
                        corrections: a.corrections.as_ptr(),
                        k: a.k,
                        blocks,
                        out: (out_addr as *mut f32).add(j0),
                        out_stride: n,
                        rows,
                    };
                    rows_of_tiles::<F>(isa, tile, a.m);
                }
            }
        });
    };
    candle_core::utils::barrier_pool().execute_chunked(n.div_ceil(GROUP), task);
}

/// One group of decoded weight rows and the activation rows it meets.
#[derive(Clone, Copy)]
struct Tile {
    w: *const Lanes,
    /// First activation row.
    values: *const i8,
    scales: *const f32,
    corrections: *const i32,
    k: usize,
    blocks: usize,
    /// `out[i][j0]` of the first activation row.
    out: *mut f32,
    out_stride: usize,
    /// Valid weight rows in the group (the last may have fewer than 16).
    rows: usize,
}

impl Tile {
    /// The same group against activation rows from `i` on.
    unsafe fn at_row(self, i: usize) -> Self {
        unsafe {
            Self {
                values: self.values.add(i * self.k),
                scales: self.scales.add(i * self.blocks),
                corrections: self.corrections.add(i * self.blocks),
                out: self.out.add(i * self.out_stride),
                ..self
            }
        }
    }
}

/// All `m` activation rows against one group, as many at a time as the
/// instruction set's registers hold.
///
/// # Safety
/// `t` must address `m` activation rows, a decoded group and the outputs;
/// the CPU must have `isa`.
unsafe fn rows_of_tiles<const F: u8>(isa: Isa, t: Tile, m: usize) {
    unsafe {
        let mut i = 0;
        if isa == Isa::Avx512 {
            while i + 8 <= m {
                tile_avx512::<8>(t.at_row(i));
                i += 8;
            }
            while i + 4 <= m {
                tile_avx512::<4>(t.at_row(i));
                i += 4;
            }
            while i < m {
                tile_avx512::<1>(t.at_row(i));
                i += 1;
            }
            return;
        }
        let tile = |t: Tile, rows: usize| match (isa, rows) {
            (Isa::AvxVnni, 2) => tile_avxvnni::<F, 2>(t),
            (Isa::AvxVnni, _) => tile_avxvnni::<F, 1>(t),
            (Isa::Avx512Vnni, 2) => tile_avx512vnni::<F, 2>(t),
            (Isa::Avx512Vnni, _) => tile_avx512vnni::<F, 1>(t),
            (_, 2) => tile_avx2::<F, 2>(t),
            _ => tile_avx2::<F, 1>(t),
        };
        while i + 2 <= m {
            tile(t.at_row(i), 2);
            i += 2;
        }
        if i < m {
            tile(t.at_row(i), 1);
        }
    }
}

/// Decodes `rows` (≤ 16) weight rows from `w` into `out`, interleaved; rows
/// past `rows` are zero.
///
/// # Safety
/// `w` must address `rows` rows of `blocks` blocks of format `F`, `row_bytes` apart.
#[target_feature(enable = "avx2,fma")]
unsafe fn decode_group<const F: u8>(w: *const u8, rows: usize, row_bytes: usize, blocks: usize, out: &mut Vec<Lanes>) {
    unsafe {
        let bb = match F {
            Q4_0 => BlockFormat::Q4_0.block_bytes(),
            Q5_0 => BlockFormat::Q5_0.block_bytes(),
            _ => BlockFormat::Q8_0.block_bytes(),
        };
        out.clear();
        out.resize(blocks * PER_BLOCK, Lanes([0; 64]));
        let words = out.as_mut_ptr().cast::<u32>();
        let mut row = [0u32; BLOCK / 4];
        for r in 0..rows {
            for b in 0..blocks {
                let src = w.add(r * row_bytes + b * bb);
                _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(PREFETCH_AHEAD).cast());
                let (d, u) = decode::<F>(src);
                _mm256_storeu_si256(row.as_mut_ptr().cast(), u);
                let block = words.add(b * PER_BLOCK * GROUP);
                for (s, &word) in row.iter().enumerate() {
                    *block.add(s * GROUP + r) = word;
                }
                *block.add((PER_BLOCK - 1) * GROUP + r) = d.to_bits();
            }
        }
    }
}

/// `MR` activation rows against one group: per block, eight `vpdpbusd` per
/// row started at the block's offset correction, then one scaling by the
/// rows' weight scales times the block's activation scale.
///
/// # Safety
/// `t` must address `MR` activation rows, a decoded group and the outputs.
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_avx512<const MR: usize>(t: Tile) {
    unsafe {
        let w = t.w.cast::<__m512i>();
        let mut acc = [_mm512_setzero_ps(); MR];
        for b in 0..t.blocks {
            let block = w.add(b * PER_BLOCK);
            let mut sums = [_mm512_setzero_si512(); MR];
            for (i, sum) in sums.iter_mut().enumerate() {
                *sum = _mm512_set1_epi32(*t.corrections.add(i * t.blocks + b));
            }
            for s in 0..BLOCK / 4 {
                let weights = _mm512_load_si512(block.add(s));
                for (i, sum) in sums.iter_mut().enumerate() {
                    let four = t.values.add(i * t.k + b * BLOCK + 4 * s).cast::<i32>().read_unaligned();
                    *sum = _mm512_dpbusd_epi32(*sum, weights, _mm512_set1_epi32(four));
                }
            }
            let dw = _mm512_castsi512_ps(_mm512_load_si512(block.add(PER_BLOCK - 1)));
            for (i, (acc, sum)) in acc.iter_mut().zip(sums).enumerate() {
                let scale = _mm512_mul_ps(dw, _mm512_set1_ps(*t.scales.add(i * t.blocks + b)));
                *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, *acc);
            }
        }
        let valid: __mmask16 = if t.rows == GROUP { u16::MAX } else { (1u16 << t.rows) - 1 };
        for (i, acc) in acc.iter().enumerate() {
            _mm512_mask_storeu_ps(t.out.add(i * t.out_stride), valid, *acc);
        }
    }
}

/// `acc + Σ w·a` per 32-bit lane with AVX2 for Q8_0, whose signed values
/// `w = u ^ 0x80` are multiplied as `|w| · (a · sign w)` (exact: a pair
/// reaches at most 2 · 128 · 127), so the sum starts at zero, not at the
/// block's offset correction.
#[inline(always)]
unsafe fn dot_avx2_signed(acc: __m256i, u: __m256i, a: __m256i) -> __m256i {
    unsafe {
        let w = _mm256_xor_si256(u, _mm256_set1_epi8(0x80u8 as i8));
        let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(a, w));
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }
}

/// The 256-bit kernels: `MR` activation rows against one group, its sixteen
/// rows in two halves of eight lanes. `$signed` marks AVX2, which takes
/// Q8_0 through [`dot_avx2_signed`].
macro_rules! tile_256 {
    ($name:ident, $features:literal, $dot:ident, $signed:literal) => {
        /// # Safety
        /// `t` must address `MR` activation rows, a decoded group and the outputs.
        #[target_feature(enable = $features)]
        unsafe fn $name<const F: u8, const MR: usize>(t: Tile) {
            unsafe {
                let signed = $signed && F == Q8_0;
                let w = t.w.cast::<__m256i>();
                let mut acc = [[_mm256_setzero_ps(); 2]; MR];
                for b in 0..t.blocks {
                    let block = w.add(b * PER_BLOCK * 2);
                    let mut sums = [[_mm256_setzero_si256(); 2]; MR];
                    if !signed {
                        for (i, sum) in sums.iter_mut().enumerate() {
                            *sum = [_mm256_set1_epi32(*t.corrections.add(i * t.blocks + b)); 2];
                        }
                    }
                    for s in 0..BLOCK / 4 {
                        let halves = [_mm256_load_si256(block.add(2 * s)), _mm256_load_si256(block.add(2 * s + 1))];
                        for (i, sum) in sums.iter_mut().enumerate() {
                            let four = t.values.add(i * t.k + b * BLOCK + 4 * s).cast::<i32>().read_unaligned();
                            let a = _mm256_set1_epi32(four);
                            for (sum, &u) in sum.iter_mut().zip(&halves) {
                                *sum = if signed { dot_avx2_signed(*sum, u, a) } else { $dot::<F>(*sum, u, a) };
                            }
                        }
                    }
                    let scales = block.add(2 * (PER_BLOCK - 1)).cast::<f32>();
                    let dw = [_mm256_load_ps(scales), _mm256_load_ps(scales.add(8))];
                    for (i, (acc, sum)) in acc.iter_mut().zip(sums).enumerate() {
                        let da = _mm256_set1_ps(*t.scales.add(i * t.blocks + b));
                        for ((acc, sum), &dw) in acc.iter_mut().zip(sum).zip(&dw) {
                            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(dw, da), *acc);
                        }
                    }
                }
                // Lane l of half h is row 8h + l: only the group's valid rows are stored.
                let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                for (i, acc) in acc.iter().enumerate() {
                    for (h, &acc) in acc.iter().enumerate() {
                        let valid = _mm256_cmpgt_epi32(_mm256_set1_epi32(t.rows as i32 - 8 * h as i32), lanes);
                        _mm256_maskstore_ps(t.out.add(i * t.out_stride + 8 * h), valid, acc);
                    }
                }
            }
        }
    };
}

tile_256!(tile_avxvnni, "avx2,fma,avxvnni", dot_avxvnni, false);
tile_256!(tile_avx512vnni, "avx2,fma,avx512vnni,avx512vl", dot_avx512vnni, false);
tile_256!(tile_avx2, "avx2,fma", dot_avx2, true);
