//! The builtin engine: GGUF models run with candle on the CPU (or CUDA).

pub mod arch;
pub mod gguf;
pub mod kv_cache;
pub mod transformer;
pub mod weights;
