//! Where a packed Hugging Face directory's tensors lie, under the names the
//! transformer loads (GGUF's): `model.layers.3.self_attn.q_proj.weight` is
//! `blk.3.attn_q.weight`. Tensors the decoder does not use (a vision tower,
//! rotary caches) are left out, so a wake never reads them.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::GgmlDType;
use serde_json::Value;

use crate::builtin::arch::Architecture;
use crate::builtin::weights::{TensorEntry, TensorIndex};
use crate::{Error, Result};

/// Where the decoder's tensors start in the checkpoints of each layout:
/// text-only, multimodal (transformers 4), multimodal (transformers 5).
const BODY_PREFIXES: &[&str] = &["language_model.model.", "model.language_model.", "model."];
const HEAD_NAMES: &[&str] = &["lm_head.weight", "language_model.lm_head.weight"];

/// The engine's name for a checkpoint tensor, or `None` when the decoder does not use it.
pub fn engine_name(arch: Architecture, name: &str) -> Option<String> {
    if HEAD_NAMES.contains(&name) {
        return Some("output.weight".into());
    }
    let body = BODY_PREFIXES.iter().find_map(|p| name.strip_prefix(p))?;
    match body {
        "embed_tokens.weight" => return Some("token_embd.weight".into()),
        "norm.weight" => return Some("output_norm.weight".into()),
        _ => {}
    }
    let rest = body.strip_prefix("layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = rest.rsplit_once('.')?;
    if !matches!(kind, "weight" | "bias") {
        return None;
    }
    let gemma = arch == Architecture::Gemma3;
    let mapped = match module {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        // Gemma normalizes around both halves of the block; the others only before the MLP.
        "post_attention_layernorm" if gemma => "post_attention_norm",
        "post_attention_layernorm" | "pre_feedforward_layernorm" => "ffn_norm",
        "post_feedforward_layernorm" => "post_ffw_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{mapped}.{kind}"))
}

/// The tensor index of a safetensors file whose JSON header is `header` and
/// whose data starts at byte `data_start` of a `file_len`-byte file.
///
/// # Errors
/// [`Error::InvalidModel`] when a tensor the decoder uses has a type other
/// than F32, F16 or BF16, or offsets that do not match its shape or lie
/// outside the file.
pub fn index(
    path: &Path,
    arch: Architecture,
    header: &serde_json::Map<String, Value>,
    data_start: u64,
    file_len: u64,
) -> Result<TensorIndex> {
    let mut entries = HashMap::new();
    for (name, info) in header {
        let Some(engine) = engine_name(arch, name) else { continue };
        let bad = |what: String| Error::invalid(path, format!("tensor {name}: {what}"));
        let dtype = match info["dtype"].as_str() {
            Some("F32") => GgmlDType::F32,
            Some("F16") => GgmlDType::F16,
            Some("BF16") => GgmlDType::BF16,
            other => return Err(bad(format!("type {other:?} is not served (F32, F16 and BF16 are)"))),
        };
        let dims: Vec<usize> = info["shape"]
            .as_array()
            .and_then(|s| s.iter().map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect())
            .ok_or_else(|| bad("no shape".into()))?;
        let offsets = info["data_offsets"].as_array().and_then(|o| Some((o.first()?.as_u64()?, o.get(1)?.as_u64()?)));
        let (from, to) = offsets.ok_or_else(|| bad("no data offsets".into()))?;
        let elements = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let len = elements.and_then(|n| n.checked_mul(dtype.type_size()));
        let start = data_start.checked_add(from);
        let fits = start.zip(data_start.checked_add(to)).is_some_and(|(s, e)| s <= e && e <= file_len);
        if !fits || len != Some((to - from.min(to)) as usize) {
            return Err(bad(format!("offsets {from}..{to} do not hold a {dims:?} tensor inside the file")));
        }
        // Gemma stores its norms as `w` and scales by `1 + w`; GGUF, and this engine, by the sum.
        let shift = if arch == Architecture::Gemma3 && engine.ends_with("norm.weight") { 1.0 } else { 0.0 };
        let entry = TensorEntry { dtype, dims, start: start.unwrap_or_default(), len: (to - from) as usize, shift };
        if entries.insert(engine.clone(), entry).is_some() {
            return Err(Error::invalid(path, format!("tensor {engine} is stored twice")));
        }
    }
    Ok(TensorIndex::from_entries(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_names_map_to_the_engines_and_unused_tensors_are_left_out() {
        let name = |arch, n| engine_name(arch, n);
        assert_eq!(
            name(Architecture::Qwen2, "model.layers.3.self_attn.q_proj.bias").as_deref(),
            Some("blk.3.attn_q.bias")
        );
        assert_eq!(name(Architecture::Llama, "model.embed_tokens.weight").as_deref(), Some("token_embd.weight"));
        assert_eq!(name(Architecture::Llama, "lm_head.weight").as_deref(), Some("output.weight"));
        assert_eq!(
            name(Architecture::Llama, "model.layers.0.post_attention_layernorm.weight").as_deref(),
            Some("blk.0.ffn_norm.weight")
        );
        assert_eq!(
            name(Architecture::Gemma3, "language_model.model.layers.1.post_attention_layernorm.weight").as_deref(),
            Some("blk.1.post_attention_norm.weight")
        );
        assert_eq!(
            name(Architecture::Gemma3, "model.language_model.layers.1.pre_feedforward_layernorm.weight").as_deref(),
            Some("blk.1.ffn_norm.weight")
        );
        assert_eq!(name(Architecture::Gemma3, "vision_tower.vision_model.embeddings.patch_embedding.weight"), None);
        assert_eq!(name(Architecture::Llama, "model.layers.0.self_attn.rotary_emb.inv_freq"), None);
        assert_eq!(name(Architecture::Llama, "model.layers.x.mlp.up_proj.weight"), None);
    }

    fn header(entries: Value) -> serde_json::Map<String, Value> {
        entries.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn offsets_that_disagree_with_the_shape_or_leave_the_file_are_refused() {
        let path = Path::new("m.safetensors");
        let ok = header(serde_json::json!({
            "model.norm.weight": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]},
            "model.vision.weight": {"dtype": "I8", "shape": [1], "data_offsets": [8, 9]},
        }));
        let index = index(path, Architecture::Gemma3, &ok, 100, 108).unwrap();
        assert_eq!(index.total_bytes(), 8, "the unused I8 tensor is not indexed");
        let refused = |h: Value, file_len| {
            super::index(path, Architecture::Llama, &header(h), 100, file_len).unwrap_err().to_string()
        };
        let short = serde_json::json!({"model.norm.weight": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}});
        assert!(refused(short, 1000).contains("do not hold"));
        let outside = serde_json::json!({"model.norm.weight": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}});
        assert!(refused(outside, 104).contains("inside the file"));
        let reversed = serde_json::json!({"model.norm.weight": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}});
        assert!(refused(reversed, 1000).contains("do not hold"));
        let wrapped =
            serde_json::json!({"model.norm.weight": {"dtype": "F32", "shape": [u64::MAX, 4], "data_offsets": [0, 8]}});
        assert!(refused(wrapped, 1000).contains("do not hold"));
        let quantized =
            serde_json::json!({"model.norm.weight": {"dtype": "F8_E4M3", "shape": [8], "data_offsets": [0, 8]}});
        assert!(refused(quantized, 1000).contains("F8_E4M3"));
    }
}
