//! Prompts on AVX-512 VNNI: sixteen weight rows interleaved so that one
//! 512-bit `vpdpbusd` advances sixteen outputs at once.
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

use super::{BLOCK, BlockFormat, BlockMatrix, PREFETCH_AHEAD, Q4_0, Q5_0, QuantizedActivations, decode};

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
pub fn matmul<const F: u8>(w: &BlockMatrix, a: &QuantizedActivations, out: &mut [f32]) {
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
                    rows_of_tiles(tile, a.m);
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

/// All `m` activation rows against one group, eight at a time.
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn rows_of_tiles(t: Tile, m: usize) {
    unsafe {
        let mut i = 0;
        while i + 8 <= m {
            tile::<8>(t.at_row(i));
            i += 8;
        }
        while i + 4 <= m {
            tile::<4>(t.at_row(i));
            i += 4;
        }
        while i < m {
            tile::<1>(t.at_row(i));
            i += 1;
        }
    }
}

/// Decodes `rows` (≤ 16) weight rows from `w` into `out`, interleaved; rows
/// past `rows` are zero.
///
/// # Safety
/// `w` must address `rows` rows of `blocks` blocks of format `F`, `row_bytes` apart.
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
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
unsafe fn tile<const MR: usize>(t: Tile) {
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
