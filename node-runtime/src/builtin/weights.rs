//! Where a model file's tensors lie (a GGUF file, or a packed Hugging Face
//! directory's safetensors), and reading them onto the device from the file
//! (the disk tier) or from its bytes in memory (the RAM tier).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor, ggml_file};
use candle_core::{Device, Module, Tensor};
use rayon::prelude::*;

use crate::engine::WeightSource;
use crate::{Error, Result};
use greenthread_kernels::{BlockFormat, BlockMatrix};

/// One tensor's place in the file.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    pub dtype: GgmlDType,
    pub dims: Vec<usize>,
    /// Byte offset from the start of the file.
    pub start: u64,
    pub len: usize,
    /// Added to every element on load (Gemma's Hugging Face norms, stored as `w` for a scale of `1 + w`).
    pub shift: f32,
}

impl TensorEntry {
    /// Whether the tensor is stored as plain floats rather than quantized blocks.
    pub fn is_float(&self) -> bool {
        matches!(self.dtype, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
    }

    /// Bytes it takes once loaded on `device`: vectors and, on the CPU, float
    /// matrices become f32; quantized matrices stay as stored.
    pub fn loaded_len(&self, device: &Device) -> usize {
        let widened = self.dims.len() == 1 || (self.is_float() && device.is_cpu());
        if widened { self.dims.iter().product::<usize>() * 4 } else { self.len }
    }
}

/// Every tensor of a GGUF file.
#[derive(Debug, Clone, Default)]
pub struct TensorIndex {
    entries: HashMap<String, TensorEntry>,
}

impl TensorIndex {
    /// # Errors
    /// [`Error::InvalidModel`] when a tensor's size does not divide into blocks.
    pub fn new(content: &Content, path: &Path) -> Result<Self> {
        let mut entries = HashMap::with_capacity(content.tensor_infos.len());
        for (name, info) in &content.tensor_infos {
            let elems = info.shape.elem_count();
            let block = info.ggml_dtype.block_size();
            if !elems.is_multiple_of(block) {
                return Err(Error::invalid(path, format!("tensor {name} does not divide into {block}-element blocks")));
            }
            entries.insert(
                name.clone(),
                TensorEntry {
                    dtype: info.ggml_dtype,
                    dims: info.shape.dims().to_vec(),
                    start: content.tensor_data_offset + info.offset,
                    len: elems / block * info.ggml_dtype.type_size(),
                    shift: 0.0,
                },
            );
        }
        Ok(Self { entries })
    }

    /// An index of tensors found elsewhere (a safetensors header).
    pub fn from_entries(entries: HashMap<String, TensorEntry>) -> Self {
        Self { entries }
    }

    /// Bytes of all tensors as stored: what a wake reads.
    pub fn total_bytes(&self) -> usize {
        self.entries.values().map(|e| e.len).sum()
    }

    /// Bytes of all tensors once loaded on `device`: the model's weight footprint.
    pub fn loaded_bytes(&self, device: &Device) -> usize {
        self.entries.values().map(|e| e.loaded_len(device)).sum()
    }

    pub fn get(&self, name: &str) -> Option<&TensorEntry> {
        self.entries.get(name)
    }

    /// Rows of a 2-D tensor.
    pub fn rows(&self, name: &str) -> Option<usize> {
        self.entries.get(name).and_then(|e| e.dims.first().copied())
    }

    /// The last byte any tensor reaches: the file must be at least this long.
    pub fn end(&self) -> u64 {
        self.entries.values().map(|e| e.start + e.len as u64).max().unwrap_or(0)
    }
}

/// A model's tensors, read from their source and waiting to become layers.
pub struct Weights {
    raw: HashMap<String, (TensorEntry, Vec<u8>)>,
    path: PathBuf,
    device: Device,
    /// Bytes handed to layers so far.
    pub loaded_bytes: usize,
}

impl Weights {
    /// Reads every tensor of `index` from `source`, in parallel.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read, [`Error::InvalidModel`]
    /// when the source is shorter than the index says.
    pub fn read_all(index: &TensorIndex, source: WeightSource<'_>, path: &Path, device: &Device) -> Result<Self> {
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let file = match source {
            WeightSource::File(p) => Some(File::open(p).map_err(io)?),
            WeightSource::Memory(bytes) => {
                if (bytes.len() as u64) < index.end() {
                    return Err(Error::invalid(path, "the in-memory copy is shorter than the model's tensors"));
                }
                None
            }
        };
        let raw = index
            .entries
            .par_iter()
            .map(|(name, entry)| {
                let bytes = match (source, &file) {
                    (WeightSource::Memory(all), _) => {
                        all[entry.start as usize..entry.start as usize + entry.len].to_vec()
                    }
                    (WeightSource::File(_), Some(f)) => {
                        let mut buf = vec![0u8; entry.len];
                        f.read_exact_at(&mut buf, entry.start).map_err(io)?;
                        buf
                    }
                    (WeightSource::File(_), None) => unreachable!("the file was opened above"),
                };
                Ok((name.clone(), (entry.clone(), bytes)))
            })
            .collect::<Result<HashMap<_, _>>>()?;
        Ok(Self { raw, path: path.to_path_buf(), device: device.clone(), loaded_bytes: 0 })
    }

    pub fn has(&self, name: &str) -> bool {
        self.raw.contains_key(name)
    }

    fn take(&mut self, name: &str) -> Result<(TensorEntry, Vec<u8>)> {
        let taken =
            self.raw.remove(name).ok_or_else(|| Error::invalid(&self.path, format!("tensor {name} is missing")))?;
        self.loaded_bytes += taken.0.loaded_len(&self.device);
        Ok(taken)
    }

    /// Whether the tensor `name` is stored as plain floats.
    pub fn is_float(&self, name: &str) -> bool {
        self.raw.get(name).is_some_and(|(e, _)| e.is_float())
    }

    /// A float tensor as a plain tensor: f32 on the CPU, as stored elsewhere
    /// (a GPU multiplies bf16 and f16 natively).
    ///
    /// # Errors
    /// [`Error::InvalidModel`] when it is missing or not a float tensor.
    pub fn dense(&mut self, name: &str) -> Result<Tensor> {
        let (entry, bytes) = self.take(name)?;
        let dtype = match entry.dtype {
            GgmlDType::F32 => candle_core::DType::F32,
            GgmlDType::F16 => candle_core::DType::F16,
            GgmlDType::BF16 => candle_core::DType::BF16,
            other => return Err(Error::invalid(&self.path, format!("tensor {name} is {other:?}, not floats"))),
        };
        let t = Tensor::from_raw_buffer(&bytes, dtype, &entry.dims, &Device::Cpu)?;
        let t = if self.device.is_cpu() { t.to_dtype(candle_core::DType::F32)? } else { t.to_device(&self.device)? };
        Ok(t)
    }

    /// A tensor by name, quantized as stored.
    ///
    /// # Errors
    /// [`Error::InvalidModel`] when it is missing or malformed.
    pub fn qtensor(&mut self, name: &str) -> Result<Arc<QTensor>> {
        let (entry, bytes) = self.take(name)?;
        let t = ggml_file::qtensor_from_ggml(entry.dtype, &bytes, entry.dims, &self.device)
            .map_err(|e| Error::invalid(&self.path, format!("tensor {name}: {e}")))?;
        Ok(Arc::new(t))
    }

    /// A 1-D tensor (norm weights, biases) as f32.
    ///
    /// # Errors
    /// As [`Self::qtensor`], or when it does not have `len` elements.
    pub fn vector(&mut self, name: &str, len: usize) -> Result<Tensor> {
        let shift = self.raw.get(name).map_or(0.0, |(e, _)| e.shift);
        // Float vectors never become quantized tensors: not every device's
        // quantized storage takes bf16.
        let mut t = if self.is_float(name) {
            self.dense(name)?.to_dtype(candle_core::DType::F32)?
        } else {
            self.qtensor(name)?.dequantize(&self.device)?
        };
        if shift != 0.0 {
            t = (t + f64::from(shift))?;
        }
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
        let weight_name = format!("{name}.weight");
        let dims = self.raw.get(&weight_name).map(|(e, _)| e.dims.clone());
        if let Some(dims) = dims
            && dims != [rows, cols]
        {
            return Err(Error::invalid(
                &self.path,
                format!("tensor {weight_name} has shape {dims:?}, expected [{rows}, {cols}]"),
            ));
        }
        let bias = self.opt_vector(&format!("{name}.bias"), rows)?;
        let weight = self.matrix(&weight_name)?;
        Ok(QLinear { weight, bias })
    }

    /// A weight matrix on the fastest kernel for its format, without copying
    /// block formats a second time.
    ///
    /// # Errors
    /// As [`Self::qtensor`].
    pub fn matrix(&mut self, name: &str) -> Result<Kernel> {
        if self.is_float(name) {
            return Ok(Kernel::Dense(self.dense(name)?));
        }
        match self.block_matrix(name)? {
            Some(block) => Ok(Kernel::Block(block)),
            None => Ok(Kernel::Candle(QMatMul::from_arc(self.qtensor(name)?)?)),
        }
    }

    /// The tensor as a block matrix if the block kernels run it here (its
    /// bytes move, no copy); `None` leaves it for candle.
    ///
    /// # Errors
    /// When it is missing.
    pub fn block_matrix(&mut self, name: &str) -> Result<Option<Arc<BlockMatrix>>> {
        let (entry, _) =
            self.raw.get(name).ok_or_else(|| Error::invalid(&self.path, format!("tensor {name} is missing")))?;
        let block = Some(entry).and_then(|e| {
            let format = BlockFormat::from_ggml(e.dtype)?;
            let [rows, cols] = e.dims[..] else { return None };
            BlockMatrix::runs_on(cols, &self.device).then_some((format, rows, cols))
        });
        let Some((format, rows, cols)) = block else { return Ok(None) };
        let (_, bytes) = self.take(name)?;
        Ok(Some(Arc::new(BlockMatrix::from_raw(format, rows, cols, bytes))))
    }
}

/// How a linear layer multiplies.
pub enum Kernel {
    /// GreenThread's block kernels (Q4_0, Q5_0, Q8_0 on the CPU); shared
    /// with the embedding table when the output projection is tied to it.
    Block(Arc<BlockMatrix>),
    /// candle's quantized matmul: other formats, other devices.
    Candle(QMatMul),
    /// Plain floats (Hugging Face checkpoints): f32 on the CPU, bf16 or f16
    /// as stored on a GPU.
    Dense(Tensor),
}

impl Kernel {
    /// A kernel over an already loaded tensor (tied embeddings).
    ///
    /// # Errors
    /// When candle cannot take the tensor.
    pub fn from_qtensor(t: Arc<QTensor>) -> candle_core::Result<Self> {
        match BlockMatrix::from_qtensor(&t) {
            Some(m) => Ok(Self::Block(Arc::new(m))),
            None => Ok(Self::Candle(QMatMul::from_arc(t)?)),
        }
    }
}

/// A linear layer with quantized weights and an optional f32 bias.
pub struct QLinear {
    weight: Kernel,
    bias: Option<Tensor>,
}

impl QLinear {
    pub fn new(weight: Kernel, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// Whether the kernel prepares data on first use (candle's K-quant repacking).
    pub fn is_lazy(&self) -> bool {
        matches!(&self.weight, Kernel::Candle(QMatMul::QTensor(t)) if !matches!(t.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16))
    }

    /// Runs the kernel once on two zero rows, which makes it prepare its
    /// data: two rows, because candle repacks Q6_K only for batches.
    ///
    /// # Errors
    /// On a tensor error.
    pub fn prime(&self, device: &Device) -> candle_core::Result<()> {
        if let Kernel::Candle(QMatMul::QTensor(t)) = &self.weight {
            let cols = t.shape().dims2()?.1;
            self.weight_forward(&Tensor::zeros((2, cols), candle_core::DType::F32, device)?)?;
        }
        Ok(())
    }

    fn weight_forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.weight {
            Kernel::Candle(m) => m.forward(x),
            Kernel::Block(m) => block_forward(m, x),
            Kernel::Dense(w) => dense_forward(w, x),
        }
    }

    /// `x`: `[tokens, inputs]` → `[tokens, outputs]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.weight_forward(x)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// `x · wᵀ` in the weight's type, back in f32.
fn dense_forward(w: &Tensor, x: &Tensor) -> candle_core::Result<Tensor> {
    if w.dtype() == x.dtype() {
        return x.matmul(&w.t()?);
    }
    x.to_dtype(w.dtype())?.matmul(&w.t()?)?.to_dtype(x.dtype())
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
