//! The block kernels in plain Rust: the definition the SIMD versions are
//! tested against, and the path on CPUs without them.

use super::{BLOCK, BlockFormat, BlockMatrix, QuantizedActivations};

/// Scale and the 32 unsigned values of block `b` of a row.
pub fn decode_block(format: BlockFormat, block: &[u8]) -> (f32, [u8; BLOCK]) {
    let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
    let mut u = [0u8; BLOCK];
    match format {
        BlockFormat::Q4_0 => {
            for j in 0..16 {
                u[j] = block[2 + j] & 0x0F;
                u[j + 16] = block[2 + j] >> 4;
            }
        }
        BlockFormat::Q5_0 => {
            let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
            for j in 0..16 {
                u[j] = (block[6 + j] & 0x0F) | ((((qh >> j) & 1) as u8) << 4);
                u[j + 16] = (block[6 + j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
            }
        }
        BlockFormat::Q8_0 => {
            for j in 0..BLOCK {
                u[j] = block[2 + j] ^ 0x80;
            }
        }
    }
    (d, u)
}

pub fn matmul(w: &BlockMatrix, a: &QuantizedActivations, out: &mut [f32]) {
    let bytes = w.format.block_bytes();
    let kb = a.blocks_per_row();
    for i in 0..a.m {
        for j in 0..w.rows {
            let mut acc = 0f32;
            for b in 0..kb {
                let block = &w.data[(j * kb + b) * bytes..(j * kb + b + 1) * bytes];
                let (d, u) = decode_block(w.format, block);
                let act = &a.values[(i * kb + b) * BLOCK..(i * kb + b + 1) * BLOCK];
                let dot: i32 = u.iter().zip(act).map(|(&u, &v)| i32::from(u) * i32::from(v)).sum::<i32>()
                    + a.corrections[i * kb + b];
                acc += d * a.scales[i * kb + b] * dot as f32;
            }
            out[i * w.rows + j] = acc;
        }
    }
}
