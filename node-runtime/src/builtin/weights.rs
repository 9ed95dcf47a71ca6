//! Reading a model's tensors out of a GGUF file.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

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
        let weight = QMatMul::from_arc(w)?;
        Ok(QLinear { weight, bias })
    }
}

/// A linear layer with quantized weights and an optional f32 bias.
pub struct QLinear {
    weight: QMatMul,
    bias: Option<Tensor>,
}

impl QLinear {
    pub fn new(weight: QMatMul, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// `x`: `[tokens, inputs]` → `[tokens, outputs]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.weight.forward(x)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}
