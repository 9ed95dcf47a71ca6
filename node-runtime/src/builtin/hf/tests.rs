//! A Hugging Face checkpoint and the GGUF file of the same weights are one
//! model: the same token ids from the same text, the same logits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::builtin::host::{LoadOptions, ModelHost, load_gguf, materialize};
use crate::builtin::transformer::{BatchItem, Transformer};
use crate::embed::pack;
use crate::engine::WeightSource;
use crate::fixtures::TinyModel;

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// Writes `model` as a directory and packs it as the node's fetch does; returns the packed file and its small files.
fn packed(model: &TinyModel, dtype: DType, dir: &Path) -> (PathBuf, BTreeMap<String, String>) {
    let checkpoint = dir.join("checkpoint");
    ok(model.write_hf(&checkpoint, dtype));
    let files: BTreeMap<String, String> = pack::DIRECTORY_FILES
        .iter()
        .filter_map(|(name, _)| Some(((*name).to_owned(), std::fs::read_to_string(checkpoint.join(name)).ok()?)))
        .collect();
    let out = dir.join("packed");
    ok(pack::pack(&checkpoint.join(pack::WEIGHTS_FILE), &files, &out));
    (out, files)
}

fn open(model: &TinyModel, dtype: DType, dir: &Path) -> ModelHost {
    let (path, files) = packed(model, dtype, dir);
    ok(super::open_hf(&path, &files, &LoadOptions::default()))
}

fn logits(transformer: &Transformer, tokens: &[u32]) -> Vec<f32> {
    let mut cache = transformer.new_cache(64);
    // A prompt, then one more token through the cache: both code paths.
    let (prompt, next) = tokens.split_at(tokens.len() - 1);
    let mut batch = [BatchItem { tokens: prompt, cache: &mut cache, want_logits: false }];
    ok(transformer.forward(&mut batch));
    let mut batch = [BatchItem { tokens: next, cache: &mut cache, want_logits: true }];
    let out: Tensor = ok(transformer.forward(&mut batch)).unwrap_or_else(|| panic!("no logits"));
    ok(ok(out.flatten_all()).to_vec1::<f32>())
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn same_model_both_ways(model: TinyModel) {
    let dir = ok(tempfile::tempdir());
    let model = model.with_dtype(candle_core::quantized::GgmlDType::F32);
    let gguf = dir.path().join("model.gguf");
    ok(model.write(&gguf));
    let from_gguf = ok(load_gguf(&gguf, &LoadOptions::default(), &Device::Cpu));
    let host = open(&model, DType::F32, dir.path());
    assert_eq!(host.cfg.arch, from_gguf.host.cfg.arch);
    for text in ["Hello world", " the world\n\n  wor 12 é", "<|im_start|>user\nhi<|im_end|>"] {
        for special in [false, true] {
            let (hf, gguf) = (host.tokenizer.encode(text, special), from_gguf.host.tokenizer.encode(text, special));
            assert_eq!(hf, gguf, "{text:?} (special: {special})");
            assert_eq!(host.tokenizer.decode(&hf), from_gguf.host.tokenizer.decode(&gguf));
        }
    }
    let ends = |h: &ModelHost| {
        (0..h.tokenizer.vocab_size() as u32).filter(|&t| h.tokenizer.is_end_of_generation(t)).collect::<Vec<_>>()
    };
    assert_eq!(ends(&host), ends(&from_gguf.host), "the same tokens end a turn");
    assert_eq!(host.info.has_chat_template, from_gguf.host.info.has_chat_template);

    let transformer = ok(materialize(&host, WeightSource::File(&host.path), &Device::Cpu));
    let tokens = host.tokenizer.encode("Hello world, the world", false);
    let (hf, gguf) = (logits(&transformer, &tokens), logits(&from_gguf.transformer, &tokens));
    let diff = max_difference(&hf, &gguf);
    assert!(diff < 1e-4, "{:?}: logits differ by {diff}", model.arch);
    assert_eq!(transformer.weight_bytes, from_gguf.transformer.weight_bytes, "f32 either way");

    // bf16 halves the file and rounds every weight: close, not equal.
    let bf16_dir = ok(tempfile::tempdir());
    let bf16 = open(&model, DType::BF16, bf16_dir.path());
    assert_eq!(bf16.info.weight_bytes * 2, host.info.weight_bytes);
    let bytes = ok(std::fs::read(&bf16.path));
    let transformer = ok(materialize(&bf16, WeightSource::Memory(&bytes), &Device::Cpu));
    let rounded = logits(&transformer, &tokens);
    let scale = gguf.iter().fold(0f32, |m, x| m.max(x.abs()));
    let diff = max_difference(&rounded, &gguf);
    assert!(diff < 0.05 * scale, "{:?}: bf16 logits differ by {diff} of {scale}", model.arch);
}

#[test]
fn a_qwen2_checkpoint_is_the_gguf_model() {
    same_model_both_ways(TinyModel::qwen2());
}

#[test]
fn a_qwen3_checkpoint_is_the_gguf_model() {
    same_model_both_ways(TinyModel::qwen3());
}

/// Llama's checkpoints rotate halves where GGUF's permuted rows rotate pairs.
#[test]
fn a_llama_checkpoint_is_the_gguf_model() {
    same_model_both_ways(TinyModel::llama());
}

/// Gemma's checkpoints store norms less one, and a SentencePiece-style vocabulary.
#[test]
fn a_gemma3_checkpoint_is_the_gguf_model() {
    same_model_both_ways(TinyModel::gemma3());
}

#[test]
fn every_tensor_name_maps_there_and_back() {
    for model in [TinyModel::qwen2(), TinyModel::qwen3(), TinyModel::llama(), TinyModel::gemma3()] {
        for t in model.tensors() {
            let hf = crate::fixtures::tiny_hf::hf_name(model.arch, &t.name);
            assert_eq!(super::tensors::engine_name(model.arch, &hf).as_deref(), Some(t.name.as_str()), "{hf}");
        }
    }
}

#[test]
fn a_checkpoint_missing_a_tensor_or_a_tokenizer_is_refused_by_name() {
    let dir = ok(tempfile::tempdir());
    let (path, mut files) = packed(&TinyModel::qwen2(), DType::BF16, dir.path());
    files.remove("tokenizer.json");
    let err = super::open_hf(&path, &files, &LoadOptions::default()).err().map(|e| e.to_string());
    assert!(err.as_deref().is_some_and(|e| e.contains("tokenizer.json")), "{err:?}");

    let mut config: serde_json::Value = ok(serde_json::from_str(&files["config.json"]));
    config["num_hidden_layers"] = 3.into();
    let (path, mut files) = packed(&TinyModel::qwen2(), DType::BF16, dir.path());
    files.insert("config.json".into(), config.to_string());
    let host = ok(super::open_hf(&path, &files, &LoadOptions::default()));
    let err = materialize(&host, WeightSource::File(&path), &Device::Cpu).err().map(|e| e.to_string());
    assert!(err.as_deref().is_some_and(|e| e.contains("blk.2.attn_norm.weight")), "{err:?}");
}
