//! Reading a model's tensors out of a GGUF file.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

use super::kernels::BlockMatrix;
use crate::{Error, Result};

/// Tensors of one GGUF file, loaded on demand onto `device`.
pub struct Weights<'a> {
    content: &'a Content,
    reader: BufReader<File>,
    path: PathBuf,
    device: Device,
    /// Bytes of every tensor loaded so far.
    pub loaded_bytes: usize,
}

impl<'a> Weights<'a> {
    pub fn new(content: &'a Content, reader: BufReader<File>, path: &Path, device: &Device) -> Self {
        Self { content, reader, path: path.to_path_buf(), device: device.clone(), loaded_bytes: 0 }
    }

    pub fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// A tensor by name, quantized as stored.
    ///
    /// # Errors
    /// [`Error::InvalidModel`] when it is missing or unreadable.
    pub fn qtensor(&mut self, name: &str) -> Result<Arc<QTensor>> {
        if !self.has(name) {
            return Err(Error::invalid(&self.path, format!("tensor {name} is missing")));
        }
        let t = self
            .content
            .tensor(&mut self.reader, name, &self.device)
            .map_err(|e| Error::invalid(&self.path, format!("tensor {name}: {e}")))?;
        self.loaded_bytes += t.storage_size_in_bytes();
        Ok(Arc::new(t))
    }

    /// A 1-D tensor (norm weights, biases) as f32.
    ///
    /// # Errors
    /// As [`Self::qtensor`], or when it does not have `len` elements.
    pub fn vector(&mut self, name: &str, len: usize) -> Result<Tensor> {
        let t = self.qtensor(name)?.dequantize(&self.device)?;
        if t.dims() != [len] {
            return Err(Error::invalid(
                &self.path,
                format!("tensor {name} has shape {:?}, expected [{len}]", t.dims()),
            ));
        }
        Ok(t)
    }

    pub fn opt_vector(&mut self, name: &str, len: usize) -> Result<Option<Tensor>> {
        if self.has(name) { self.vector(name, len).map(Some) } else { Ok(None) }
    }

    /// A `[rows, cols]` matrix as a linear layer mapping `cols` inputs to `rows` outputs.
    ///
    /// # Errors
    /// As [`Self::qtensor`], or when its shape is not `[rows, cols]`.
    pub fn linear(&mut self, name: &str, rows: usize, cols: usize) -> Result<QLinear> {
        let w = self.qtensor(&format!("{name}.weight"))?;
        if w.shape().dims() != [rows, cols] {
            return Err(Error::invalid(
                &self.path,
                format!("tensor {name}.weight has shape {:?}, expected [{rows}, {cols}]", w.shape().dims()),
            ));
        }
        let bias = self.opt_vector(&format!("{name}.bias"), rows)?;
        Ok(QLinear::new(w, bias)?)
    }
}

/// How a linear layer multiplies.
enum Kernel {
    /// GreenThread's block kernels (Q4_0, Q5_0, Q8_0 on the CPU).
    Block(BlockMatrix),
    /// candle's quantized matmul: other formats, other devices.
    Candle(QMatMul),
}

/// A linear layer with quantized weights and an optional f32 bias.
pub struct QLinear {
    weight: Kernel,
    bias: Option<Tensor>,
}

impl QLinear {
    /// A layer over `weight`, on the block kernels where they apply.
    ///
    /// # Errors
    /// When candle cannot take the tensor.
    pub fn new(weight: Arc<QTensor>, bias: Option<Tensor>) -> candle_core::Result<Self> {
        let weight = match BlockMatrix::from_qtensor(&weight) {
            Some(m) => Kernel::Block(m),
            None => Kernel::Candle(QMatMul::from_arc(weight)?),
        };
        Ok(Self { weight, bias })
    }

    /// `x`: `[tokens, inputs]` → `[tokens, outputs]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = match &self.weight {
            Kernel::Candle(m) => m.forward(x)?,
            Kernel::Block(m) => block_forward(m, x)?,
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

fn block_forward(w: &BlockMatrix, x: &Tensor) -> candle_core::Result<Tensor> {
    let (m, k) = x.dims2()?;
    if k != w.cols() {
        candle_core::bail!("linear layer expects {} inputs, got {k}", w.cols());
    }
    let x = x.contiguous()?;
    let mut out = vec![0f32; m * w.rows()];
    {
        let (storage, layout) = x.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            candle_core::bail!("block kernels run on the CPU only");
        };
        let data = &cpu.as_slice::<f32>()?[layout.start_offset()..layout.start_offset() + m * k];
        w.matmul(data, m, &mut out);
    }
    Tensor::from_vec(out, (m, w.rows()), x.device())
}
