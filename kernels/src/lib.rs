//! Matrix kernels for the 32-element block formats (Q4_0, Q5_0, Q8_0) that
//! most small GGUF models store their weights in.
//!
//! candle's CPU path for these runs one dot product per (row, column) and,
//! for Q5_0, without SIMD at all; its fast repacked kernels need the inner
//! dimension to be a multiple of 256, which 896- and 640-wide models are not.
//! These kernels read the blocks as stored (no repacked copy kept, no
//! load-time work), quantize the activations to 8 bits once per call, and
//! compute `u8 × i8` dot products with VNNI (or AVX2). Decoding one token
//! streams each weight row once; a prompt's product decodes its weight rows
//! once per call into interleaved groups of 16, which all of its activation
//! rows reuse. Dispatch is decided at run time.

mod activations;
mod reference;
#[cfg(target_arch = "x86_64")]
mod x86;

use candle_core::quantized::{GgmlDType, QTensor};

pub use self::activations::QuantizedActivations;

/// Elements per block.
pub const BLOCK: usize = 32;

/// A block format these kernels run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockFormat {
    /// 4-bit unsigned values with offset 8, one f16 scale: 18 bytes.
    Q4_0,
    /// 5-bit unsigned values with offset 16, one f16 scale: 22 bytes.
    Q5_0,
    /// 8-bit signed values, one f16 scale: 34 bytes.
    Q8_0,
}

impl BlockFormat {
    pub fn from_ggml(dtype: GgmlDType) -> Option<Self> {
        match dtype {
            GgmlDType::Q4_0 => Some(Self::Q4_0),
            GgmlDType::Q5_0 => Some(Self::Q5_0),
            GgmlDType::Q8_0 => Some(Self::Q8_0),
            _ => None,
        }
    }

    pub const fn block_bytes(self) -> usize {
        match self {
            Self::Q4_0 => 18,
            Self::Q5_0 => 22,
            Self::Q8_0 => 34,
        }
    }

    /// What is subtracted from the stored unsigned value to get the weight.
    /// Q8_0's signed values are read as `value ^ 0x80`, i.e. with offset 128.
    pub const fn offset(self) -> i32 {
        match self {
            Self::Q4_0 => 8,
            Self::Q5_0 => 16,
            Self::Q8_0 => 128,
        }
    }
}

/// Which instruction set the kernels use on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `vpdpbusd` on 512-bit vectors for several activation rows, on 256-bit
    /// ones for one (AVX-512 VNNI).
    Vnni512,
    /// `vpdpbusd` on 256-bit vectors (AVX-VNNI, or AVX-512 VNNI with VL).
    Vnni,
    /// `vpmaddubsw` + `vpmaddwd`, with Q8_0's signed values multiplied by sign.
    Avx2,
    /// Plain Rust.
    Scalar,
}

impl Level {
    /// How `greenthread --version` and the logs name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vnni512 => "avx512-vnni (512-bit)",
            Self::Vnni => "vnni (AVX-VNNI or AVX-512 VNNI)",
            Self::Avx2 => "avx2",
            Self::Scalar => "scalar",
        }
    }
}

/// The level for this CPU, detected once.
pub fn level() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        x86::level()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Level::Scalar
    }
}

/// A weight matrix of `rows` × `cols` in a block format, row-major as in GGUF.
pub struct BlockMatrix {
    format: BlockFormat,
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

impl BlockMatrix {
    /// Takes `t` (shape `[rows, cols]`) if the kernels run its format fast
    /// on this CPU; `None` leaves it to candle.
    pub fn from_qtensor(t: &QTensor) -> Option<Self> {
        let format = BlockFormat::from_ggml(t.dtype())?;
        let (rows, cols) = t.shape().dims2().ok()?;
        if !Self::runs_on(cols, &t.device()) {
            return None;
        }
        let data = t.data().ok()?.into_owned();
        (data.len() == rows * cols / BLOCK * format.block_bytes()).then_some(Self { format, rows, cols, data })
    }

    /// Whether these kernels run a block matrix with `cols` inputs fast on
    /// `device` (every block format runs on every SIMD level).
    pub fn runs_on(cols: usize, device: &candle_core::Device) -> bool {
        level() != Level::Scalar && cols.is_multiple_of(BLOCK) && device.is_cpu()
    }

    /// Builds a matrix from raw blocks as GGUF stores them.
    ///
    /// # Panics
    /// When `data` does not hold `rows × cols` values of `format`.
    pub fn from_raw(format: BlockFormat, rows: usize, cols: usize, data: Vec<u8>) -> Self {
        assert!(cols.is_multiple_of(BLOCK) && data.len() == rows * cols / BLOCK * format.block_bytes());
        Self { format, rows, cols, data }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn format(&self) -> BlockFormat {
        self.format
    }

    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// `out[i][j] = Σ_c x[i][c] · w[j][c]` for `m` rows of `x` (`m × cols`);
    /// `out` is `m × rows`.
    ///
    /// # Panics
    /// When the slices do not have those sizes.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        assert_eq!(x.len(), m * self.cols);
        assert_eq!(out.len(), m * self.rows);
        let acts = QuantizedActivations::new(x, m, self.cols, self.format.offset());
        self.matmul_quantized(&acts, out);
    }

    /// As [`Self::matmul`], with activations already quantized.
    pub fn matmul_quantized(&self, acts: &QuantizedActivations, out: &mut [f32]) {
        match level() {
            #[cfg(target_arch = "x86_64")]
            Level::Vnni512 | Level::Vnni | Level::Avx2 => x86::matmul(self, acts, out),
            _ => reference::matmul(self, acts, out),
        }
    }

    /// Row `row` as f32 values (embedding lookups).
    ///
    /// # Panics
    /// When `row` or `out` is out of range.
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        let bytes = self.format.block_bytes();
        let blocks = self.cols / BLOCK;
        let offset = self.format.offset() as f32;
        let data = &self.data[row * blocks * bytes..(row + 1) * blocks * bytes];
        for (block, dst) in data.chunks_exact(bytes).zip(out.chunks_exact_mut(BLOCK)) {
            let (d, u) = reference::decode_block(self.format, block);
            for (o, &q) in dst.iter_mut().zip(&u) {
                *o = d * (f32::from(q) - offset);
            }
        }
    }

    /// The scalar reference, for tests of the SIMD kernels.
    pub fn matmul_reference(&self, x: &[f32], m: usize, out: &mut [f32]) {
        let acts = QuantizedActivations::new(x, m, self.cols, self.format.offset());
        reference::matmul(self, &acts, out);
    }
}

#[cfg(test)]
mod tests;
