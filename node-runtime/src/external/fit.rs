//! The context window a `llama-server` gets from the device memory its spec
//! declares: what is left after the weights and llama.cpp's compute
//! buffers, divided by what one token of its KV cache takes — so several
//! engines declared to share a GPU each stay inside their part of it.

use std::path::Path;

use crate::builtin::arch::ArchConfig;

/// The share of the declared memory left to llama.cpp's compute buffers.
const COMPUTE_SHARE: f64 = 0.10;
/// Context windows are whole multiples of this many tokens.
const STEP: u64 = 256;

/// Bytes one token takes in llama.cpp's default KV cache (K and V, f16, every layer).
pub fn kv_bytes_per_token(arch: &ArchConfig) -> u64 {
    arch.kv_bytes_per_token(2)
}

/// The largest context that fits `declared` bytes beside `weights`, at most
/// `trained` tokens; `None` when not even [`STEP`] tokens fit.
pub fn context_for(declared: u64, weights: u64, per_token: u64, trained: u64) -> Option<u64> {
    let budget = (declared as f64 * (1.0 - COMPUTE_SHARE)) as u64;
    let tokens = (budget.checked_sub(weights)? / per_token.max(1)).min(trained);
    let tokens = tokens - tokens % STEP;
    (tokens >= STEP).then_some(tokens)
}

/// The `-c` a `llama-server` over the GGUF file `artifact` gets from `declared` bytes.
///
/// # Errors
/// When the file cannot be read as a model of a known architecture, or
/// the declared memory does not hold its weights and a minimal context.
pub fn llama_context(artifact: &Path, declared: u64) -> Result<u64, String> {
    let arch = crate::builtin::read_arch(artifact).map_err(|e| e.to_string())?;
    let weights = std::fs::metadata(artifact).map_err(|e| e.to_string())?.len();
    context_for(declared, weights, kv_bytes_per_token(&arch), arch.context_length as u64).ok_or_else(|| {
        format!("device_memory {declared} bytes does not hold the model's {weights} bytes of weights and {STEP} tokens of context")
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::fixtures::tiny_model::TinyModel;

    #[test]
    fn a_real_file_gets_the_context_its_memory_holds() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("tiny.gguf");
        let tiny = TinyModel::qwen2();
        tiny.write(&path).unwrap_or_else(|e| panic!("{e}"));
        let weights = std::fs::metadata(&path).map(|m| m.len()).unwrap_or_default();
        // 2 layers × 2 KV heads × 16 dims, K and V in f16: 256 bytes a token.
        let per_token = (2 * tiny.layers * tiny.kv_heads * tiny.head_dim * 2) as u64;
        assert_eq!(per_token, 256);
        let declared = ((weights + 300 * per_token) as f64 / 0.9).ceil() as u64;
        assert_eq!(llama_context(&path, declared), Ok(256), "300 tokens fit: one step of 256");
        let roomy = llama_context(&path, 1 << 30);
        assert_eq!(roomy, Ok(tiny.context_length as u64), "never more than it was trained for");
        assert!(llama_context(&path, weights).is_err());
        assert!(llama_context(dir.path(), 1 << 30).is_err());
    }

    proptest! {
        #[test]
        fn the_context_and_the_weights_fit_the_declared_memory(
            declared in 1u64..(1 << 40), weights in 0u64..(1 << 38), per_token in 1u64..(1 << 20), trained in 1u64..(1 << 20),
        ) {
            if let Some(tokens) = context_for(declared, weights, per_token, trained) {
                prop_assert!(weights + tokens * per_token <= declared);
                prop_assert!(tokens <= trained && tokens % STEP == 0 && tokens >= STEP);
                let more = context_for(declared.saturating_mul(2), weights, per_token, trained);
                prop_assert!(more.is_some_and(|m| m >= tokens), "more memory never means less context");
            }
        }
    }
}
