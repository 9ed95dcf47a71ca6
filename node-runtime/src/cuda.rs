//! The CUDA weight path of a GPU node: the RAM tier in pinned host memory,
//! wakes as chunked asynchronous host-to-device copies spread over several
//! streams so they overlap, wakes from disk pipelined through pinned staging
//! buffers, and sleeps that free every device byte — the stream-ordered
//! memory pool is trimmed so no cached allocation keeps VRAM.
//!
//! Built with the `cuda` feature, which links CUDA's libraries as candle's
//! CUDA backend does: the process does not start where they are absent, and
//! where they are present without a usable GPU (or with the stand-ins of
//! `scripts/cuda-stubs.sh`), [`GpuDevice::open`] returns the driver's error.

#![allow(unsafe_code)]

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use cudarc::driver::sys;
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DriverError, PinnedHostSlice};

/// Bytes per asynchronous copy: large enough to run at full PCIe speed,
/// small enough that several are in flight on different streams.
pub const COPY_CHUNK: usize = 64 << 20;
/// Copy streams: enough to keep both directions of the copy engines busy.
pub const STREAMS: usize = 4;

/// Why a GPU operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("CUDA: {0}")]
    Driver(#[from] DriverError),
    #[error("reading {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

pub type GpuResult<T> = Result<T, GpuError>;

/// One GPU and the streams weights are copied on.
pub struct GpuDevice {
    ctx: Arc<CudaContext>,
    streams: Vec<Arc<CudaStream>>,
}

/// Page-locked host memory: the RAM tier of a GPU node, so wakes run at DMA speed.
pub struct PinnedBuffer {
    slice: PinnedHostSlice<u8>,
}

/// A model's weights on the device: one allocation, tensors at offsets in it.
pub struct DeviceWeights {
    buffer: CudaSlice<u8>,
}

impl DeviceWeights {
    pub fn bytes(&self) -> usize {
        self.buffer.len()
    }
}

impl GpuDevice {
    /// Opens GPU `ordinal`.
    ///
    /// # Errors
    /// The driver's error: no device, or none with that ordinal.
    pub fn open(ordinal: usize) -> GpuResult<Self> {
        let ctx = CudaContext::new(ordinal)?;
        let streams = (0..STREAMS).map(|_| ctx.new_stream()).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { ctx, streams })
    }

    /// Free and total device memory, in bytes (cuMemGetInfo).
    ///
    /// # Errors
    /// The driver's error.
    pub fn memory(&self) -> GpuResult<(usize, usize)> {
        Ok(self.ctx.mem_get_info()?)
    }

    /// Page-locked host memory of `len` bytes.
    ///
    /// # Errors
    /// The driver's error (e.g. too much locked memory).
    pub fn pinned(&self, len: usize) -> GpuResult<PinnedBuffer> {
        // SAFETY: the contents are unset; every user writes before reading.
        let slice = unsafe { self.ctx.alloc_pinned::<u8>(len) }?;
        Ok(PinnedBuffer { slice })
    }

    /// Reads `path` into a new pinned buffer (fills the RAM tier).
    ///
    /// # Errors
    /// On a read or allocation failure.
    pub fn pin_file(&self, path: &Path) -> GpuResult<PinnedBuffer> {
        let io = |source| GpuError::Io { path: path.display().to_string(), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len() as usize;
        let mut buffer = self.pinned(len)?;
        file.read_exact_at(buffer.slice.as_mut_slice()?, 0).map_err(io)?;
        Ok(buffer)
    }

    /// Copies `pinned` onto the device: one allocation, filled by
    /// [`COPY_CHUNK`]-sized asynchronous copies spread over the streams.
    ///
    /// # Errors
    /// The driver's error.
    pub fn wake_from_ram(&self, pinned: &PinnedBuffer) -> GpuResult<DeviceWeights> {
        let mut weights = self.allocate(pinned.len())?;
        self.copy_to_device(pinned, &mut weights)?;
        Ok(weights)
    }

    /// An uninitialized device allocation of `len` bytes.
    ///
    /// # Errors
    /// The driver's error (out of memory).
    pub fn allocate(&self, len: usize) -> GpuResult<DeviceWeights> {
        let stream = &self.streams[0];
        // SAFETY: callers fill every byte before it is read.
        let buffer = unsafe { stream.alloc::<u8>(len) }?;
        stream.synchronize()?;
        Ok(DeviceWeights { buffer })
    }

    /// Copies all of `pinned` into `weights`, chunks spread over the streams,
    /// and waits for the copies.
    ///
    /// # Errors
    /// The driver's error.
    pub fn copy_to_device(&self, pinned: &PinnedBuffer, weights: &mut DeviceWeights) -> GpuResult<()> {
        let src = pinned.slice.as_slice()?;
        for (i, chunk) in src.chunks(COPY_CHUNK).enumerate() {
            let start = i * COPY_CHUNK;
            let s = &self.streams[i % self.streams.len()];
            s.memcpy_htod(chunk, &mut weights.buffer.slice_mut(start..start + chunk.len()))?;
        }
        for s in &self.streams {
            s.synchronize()?;
        }
        Ok(())
    }

    /// Reads `path` straight onto the device through two pinned staging
    /// buffers: while one chunk is copied to the device, the next is read.
    ///
    /// # Errors
    /// On a read or driver failure.
    pub fn wake_from_disk(&self, path: &Path) -> GpuResult<DeviceWeights> {
        let io = |source| GpuError::Io { path: path.display().to_string(), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len() as usize;
        let stream = &self.streams[0];
        // SAFETY: every byte is written by the copies below before any use.
        let mut buffer = unsafe { stream.alloc::<u8>(len) }?;
        stream.synchronize()?;
        let mut staging = [self.pinned(COPY_CHUNK)?, self.pinned(COPY_CHUNK)?];
        let mut offset = 0;
        let mut turn = 0;
        while offset < len {
            let n = COPY_CHUNK.min(len - offset);
            let s = &self.streams[turn % 2];
            // The copy that last used this staging buffer must be done before it is refilled.
            s.synchronize()?;
            let stage = &mut staging[turn % 2].slice.as_mut_slice()?[..n];
            file.read_exact_at(stage, offset as u64).map_err(io)?;
            s.memcpy_htod(&*stage, &mut buffer.slice_mut(offset..offset + n))?;
            offset += n;
            turn += 1;
        }
        for s in &self.streams {
            s.synchronize()?;
        }
        Ok(DeviceWeights { buffer })
    }

    /// Frees `weights` and trims the device's memory pool to zero, so the
    /// bytes go back to the device, not to a cache.
    ///
    /// # Errors
    /// The driver's error.
    pub fn sleep(&self, weights: DeviceWeights) -> GpuResult<()> {
        drop(weights);
        for s in &self.streams {
            s.synchronize()?;
        }
        self.ctx.synchronize()?;
        if self.ctx.has_async_alloc() {
            let mut pool = std::mem::MaybeUninit::<sys::CUmemoryPool>::uninit();
            // SAFETY: the context is current (synchronize bound it); the pool
            // handle is written by the driver before it is read.
            unsafe {
                sys::cuDeviceGetDefaultMemPool(pool.as_mut_ptr(), self.ctx.cu_device()).result()?;
                sys::cuMemPoolTrimTo(pool.assume_init(), 0).result()?;
            }
        }
        Ok(())
    }
}

impl PinnedBuffer {
    pub fn len(&self) -> usize {
        self.slice.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slice.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set where the process runs on `scripts/cuda-stubs.sh`'s stand-ins,
    /// so "no GPU" is what the test must see; elsewhere a GPU may answer.
    const EXPECT_NO_DEVICE: &str = "GREENTHREAD_EXPECT_NO_CUDA_DEVICE";

    #[test]
    fn a_machine_without_a_gpu_gets_the_drivers_error_not_a_panic() {
        match GpuDevice::open(0) {
            Ok(gpu) => {
                assert!(std::env::var_os(EXPECT_NO_DEVICE).is_none(), "a GPU answered where none exists");
                let (free, total) = gpu.memory().unwrap_or_else(|e| panic!("{e}"));
                assert!(free <= total && total > 0);
            }
            Err(e) => {
                let message = e.to_string();
                assert!(message.starts_with("CUDA: "), "{message}");
                if std::env::var_os(EXPECT_NO_DEVICE).is_some() {
                    assert!(message.contains("CUDA_ERROR_NO_DEVICE"), "{message}");
                }
            }
        }
    }
}
