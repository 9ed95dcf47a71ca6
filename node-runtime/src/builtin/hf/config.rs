//! A Hugging Face `config.json` read as the builtin engine's architecture,
//! with the defaults transformers applies where a key is absent.

use serde::Deserialize;
use serde_json::Value;

use crate::builtin::arch::{Activation, ArchConfig, Architecture, Llama3Rope, RopeParams, RopeStyle};

/// The `model_type`s of the chat models the builtin engine runs from a
/// Hugging Face directory (`gemma3` is the multimodal checkpoint, whose
/// language model it serves).
pub const MODEL_TYPES: &[&str] = &["llama", "qwen2", "qwen3", "gemma3_text", "gemma3"];

/// The keys of `config.json` (or of its `text_config`) that shape the decoder.
#[derive(Debug, Deserialize)]
struct TextConfig {
    model_type: Option<String>,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    intermediate_size: usize,
    rms_norm_eps: Option<f64>,
    max_position_embeddings: Option<usize>,
    rope_theta: Option<f64>,
    rope_scaling: Option<Value>,
    /// transformers 5 keeps the rope settings here (per layer type for Gemma 3).
    rope_parameters: Option<Value>,
    hidden_act: Option<String>,
    hidden_activation: Option<String>,
    use_sliding_window: Option<bool>,
    sliding_window: Option<usize>,
    sliding_window_pattern: Option<usize>,
    layer_types: Option<Vec<String>>,
    rope_local_base_freq: Option<f64>,
    query_pre_attn_scalar: Option<f64>,
    attn_logit_softcapping: Option<f64>,
    final_logit_softcapping: Option<f64>,
    partial_rotary_factor: Option<f64>,
}

/// Reads a model directory's `config.json`.
///
/// # Errors
/// A message naming the setting that is missing or that the engine does not run.
pub fn arch_config(config: &Value) -> Result<ArchConfig, String> {
    let model_type = config["model_type"].as_str().unwrap_or_default();
    let text = match model_type {
        "gemma3" => config.get("text_config").cloned().unwrap_or_else(|| config.clone()),
        _ => config.clone(),
    };
    let c: TextConfig = serde_json::from_value(text).map_err(|e| format!("config.json: {e}"))?;
    let arch = match c.model_type.as_deref().unwrap_or(model_type) {
        "llama" => Architecture::Llama,
        "qwen2" => Architecture::Qwen2,
        "qwen3" => Architecture::Qwen3,
        "gemma3" | "gemma3_text" => Architecture::Gemma3,
        other => {
            return Err(format!(
                "model_type {other:?} is not a chat model the builtin engine runs (it runs {})",
                MODEL_TYPES.join(", ")
            ));
        }
    };
    let is_gemma = arch == Architecture::Gemma3;
    for (name, value) in
        [("attn_logit_softcapping", c.attn_logit_softcapping), ("final_logit_softcapping", c.final_logit_softcapping)]
    {
        if value.is_some() {
            return Err(format!("{name} is not supported"));
        }
    }
    if c.partial_rotary_factor.is_some_and(|f| f != 1.0) {
        return Err("partial rotary embeddings are not supported".into());
    }
    if c.use_sliding_window == Some(true) && !is_gemma {
        return Err("use_sliding_window is not supported for this architecture".into());
    }
    let n_heads = c.num_attention_heads;
    let n_kv_heads = c.num_key_value_heads.unwrap_or(n_heads);
    if n_heads == 0 || n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) {
        return Err(format!("{n_heads} attention heads cannot share {n_kv_heads} key/value heads"));
    }
    let head_dim = c.head_dim.unwrap_or(if is_gemma { 256 } else { c.hidden_size / n_heads });
    if head_dim == 0 || !head_dim.is_multiple_of(2) {
        return Err(format!("head dimension {head_dim} is not a positive even number"));
    }
    let activation = match c.hidden_activation.as_deref().or(c.hidden_act.as_deref()) {
        None if is_gemma => Activation::GeluTanh,
        None | Some("silu") => Activation::Silu,
        Some("gelu_pytorch_tanh" | "gelu_tanh") => Activation::GeluTanh,
        Some(other) => return Err(format!("activation {other:?} is not supported (silu, gelu_pytorch_tanh are)")),
    };
    let (rope_global, rope_local) = rope(&c, is_gemma)?;
    let (sliding_window, global_layer_period) =
        if is_gemma { (Some(c.sliding_window.unwrap_or(4096)), Some(global_layer_period(&c)?)) } else { (None, None) };
    let attention_scale = match c.query_pre_attn_scalar {
        Some(s) if is_gemma && s > 0.0 => (1.0 / s.sqrt()) as f32,
        _ => 1.0 / (head_dim as f32).sqrt(),
    };
    Ok(ArchConfig {
        arch,
        n_layers: c.num_hidden_layers,
        hidden: c.hidden_size,
        n_heads,
        n_kv_heads,
        head_dim,
        ffn_hidden: c.intermediate_size,
        rms_eps: c.rms_norm_eps.unwrap_or(1e-6) as f32,
        context_length: c.max_position_embeddings.unwrap_or(if is_gemma { 131_072 } else { 4096 }),
        // Hugging Face checkpoints rotate halves (`rotate_half`), Llama's included:
        // the interleaved pairs of GGUF's Llama come from a permutation at conversion.
        rope_style: RopeStyle::Neox,
        rope_global,
        rope_local,
        sliding_window,
        global_layer_period,
        embed_scale: is_gemma.then(|| (c.hidden_size as f32).sqrt()),
        activation,
        attention_scale,
    })
}

/// Every how many layers one attends globally: Gemma 3's `layer_types`
/// (each 6th `full_attention`), or its older `sliding_window_pattern`.
fn global_layer_period(c: &TextConfig) -> Result<usize, String> {
    let Some(types) = &c.layer_types else { return Ok(c.sliding_window_pattern.unwrap_or(6)) };
    let period = types.iter().position(|t| t == "full_attention").map_or(types.len() + 1, |i| i + 1);
    let regular = types.iter().enumerate().all(|(i, t)| {
        let global = (i + 1).is_multiple_of(period);
        t == if global { "full_attention" } else { "sliding_attention" }
    });
    if regular { Ok(period) } else { Err(format!("layer_types {types:?} is not a regular pattern")) }
}

/// The rope of global and of sliding-window layers.
fn rope(c: &TextConfig, is_gemma: bool) -> Result<(RopeParams, RopeParams), String> {
    let nested = |kind: &str| c.rope_parameters.as_ref().and_then(|p| p.get(kind)).filter(|v| v.is_object());
    let (global, local) = match (nested("full_attention"), nested("sliding_attention")) {
        (Some(full), Some(sliding)) => (rope_params(full, 1e6)?, rope_params(sliding, 1e4)?),
        _ => {
            let mut settings = c.rope_scaling.clone().filter(Value::is_object).unwrap_or_else(|| serde_json::json!({}));
            if let Some(Value::Object(p)) = &c.rope_parameters {
                for (k, v) in p {
                    settings[k] = v.clone();
                }
            }
            if let Some(theta) = c.rope_theta {
                settings["rope_theta"] = theta.into();
            }
            let global = rope_params(&settings, if is_gemma { 1e6 } else { 1e4 })?;
            let local = RopeParams::base(c.rope_local_base_freq.unwrap_or(1e4) as f32);
            (global, if is_gemma { local } else { global })
        }
    };
    Ok((global, local))
}

/// One rope setting: `rope_theta` and a `rope_type` (or older `type`) of
/// none, `default`, `linear` or `llama3`.
fn rope_params(settings: &Value, default_theta: f64) -> Result<RopeParams, String> {
    let base = settings["rope_theta"].as_f64().unwrap_or(default_theta) as f32;
    let factor =
        |key: &str| settings[key].as_f64().map(|f| f as f32).ok_or_else(|| format!("rope scaling needs {key}"));
    let kind = settings["rope_type"].as_str().or_else(|| settings["type"].as_str());
    Ok(match kind {
        None | Some("default") => RopeParams::base(base),
        Some("linear") => RopeParams { base, scale: factor("factor")?, llama3: None },
        Some("llama3") => RopeParams {
            base,
            scale: 1.0,
            llama3: Some(Llama3Rope {
                factor: factor("factor")?,
                low_freq_factor: factor("low_freq_factor")?,
                high_freq_factor: factor("high_freq_factor")?,
                original_context: factor("original_max_position_embeddings")?,
            }),
        },
        Some(other) => return Err(format!("rope scaling {other:?} is not supported (linear, llama3 are)")),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn qwen3() -> Value {
        json!({
            "model_type": "qwen3", "hidden_size": 1024, "num_hidden_layers": 28, "num_attention_heads": 16,
            "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 3072, "rms_norm_eps": 1e-6,
            "max_position_embeddings": 40960, "rope_theta": 1000000, "rope_scaling": null, "hidden_act": "silu",
            "tie_word_embeddings": true, "use_sliding_window": false, "sliding_window": null
        })
    }

    #[test]
    fn qwen3_reads_its_explicit_head_dim_and_rope_base() {
        let cfg = arch_config(&qwen3()).unwrap();
        assert_eq!((cfg.arch, cfg.head_dim, cfg.n_kv_heads, cfg.context_length), (Architecture::Qwen3, 128, 8, 40960));
        assert_eq!(cfg.rope_global, RopeParams::base(1e6));
        assert_eq!(cfg.rope_style, RopeStyle::Neox);
        assert!((cfg.attention_scale - 1.0 / 128f32.sqrt()).abs() < 1e-7);
    }

    #[test]
    fn gemma3_inside_a_multimodal_config_reads_its_text_config_and_layer_pattern() {
        let config = json!({
            "model_type": "gemma3",
            "text_config": {
                "model_type": "gemma3_text", "hidden_size": 2560, "num_hidden_layers": 34, "num_attention_heads": 8,
                "num_key_value_heads": 4, "head_dim": 256, "intermediate_size": 10240, "query_pre_attn_scalar": 256,
                "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024,
                "rope_local_base_freq": 10000.0, "rope_theta": 1000000.0,
                "final_logit_softcapping": null, "attn_logit_softcapping": null
            }
        });
        let cfg = arch_config(&config).unwrap();
        assert_eq!(cfg.arch, Architecture::Gemma3);
        assert_eq!(cfg.rope_global, RopeParams { base: 1e6, scale: 8.0, llama3: None });
        assert_eq!(cfg.rope_local, RopeParams::base(1e4));
        assert_eq!((cfg.sliding_window, cfg.global_layer_period), (Some(1024), Some(6)));
        assert!(cfg.is_local_layer(0) && !cfg.is_local_layer(5), "every sixth layer is global");
        assert_eq!(cfg.activation, Activation::GeluTanh);
        assert_eq!(cfg.embed_scale, Some(2560f32.sqrt()));
    }

    #[test]
    fn gemma3_layer_types_give_the_period_and_an_irregular_list_is_refused() {
        let mut types: Vec<&str> =
            (1..=12).map(|i| if i % 4 == 0 { "full_attention" } else { "sliding_attention" }).collect();
        let config = |types: &[&str]| {
            json!({"model_type": "gemma3_text", "hidden_size": 64, "num_hidden_layers": types.len(),
                   "num_attention_heads": 2, "head_dim": 32, "intermediate_size": 128, "layer_types": types})
        };
        assert_eq!(arch_config(&config(&types)).unwrap().global_layer_period, Some(4));
        types[1] = "full_attention";
        assert!(arch_config(&config(&types)).unwrap_err().contains("layer_types"));
    }

    #[test]
    fn llama3_rope_scaling_slows_low_frequencies_and_keeps_high_ones() {
        let mut config = qwen3();
        config["model_type"] = "llama".into();
        config["rope_theta"] = 500_000.0.into();
        config["rope_scaling"] = json!({"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                         "original_max_position_embeddings": 8192, "rope_type": "llama3"});
        let cfg = arch_config(&config).unwrap();
        let plain = RopeParams::base(500_000.0).inverse_frequencies(128);
        let scaled = cfg.rope_global.inverse_frequencies(128);
        assert_eq!(scaled[0], plain[0], "the fastest rotation is untouched");
        assert!((scaled[63] - plain[63] / 8.0).abs() <= plain[63] * 1e-6, "the slowest is divided by the factor");
    }

    #[test]
    fn what_the_engine_does_not_run_is_refused_by_name() {
        let refused = |edit: &dyn Fn(&mut Value)| {
            let mut config = qwen3();
            edit(&mut config);
            arch_config(&config).unwrap_err()
        };
        assert!(refused(&|c| c["model_type"] = "mixtral".into()).contains("mixtral"));
        assert!(refused(&|c| c["rope_scaling"] = json!({"type": "yarn", "factor": 4.0})).contains("yarn"));
        assert!(refused(&|c| c["hidden_act"] = "relu".into()).contains("relu"));
        assert!(refused(&|c| c["num_key_value_heads"] = 5.into()).contains("key/value heads"));
        assert!(refused(&|c| c["use_sliding_window"] = true.into()).contains("use_sliding_window"));
        assert!(refused(&|c| c["final_logit_softcapping"] = 30.0.into()).contains("softcapping"));
        assert!(
            refused(&|c| c.as_object_mut().unwrap().remove("hidden_size").map_or((), drop)).contains("hidden_size")
        );
    }
}
