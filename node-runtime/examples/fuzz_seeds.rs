//! Writes the seed corpus of the `model_file` fuzz target
//! (`tests/__fuzz__/model_file/corpus`): small real models of every kind a
//! node opens, so mutation starts from files that load. Run after a format
//! change: `cargo run -p greenthread-node-runtime --example fuzz_seeds`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

fn main() {
    use candle_core::DType;
    use greenthread_node_runtime::embed::pack;
    use greenthread_node_runtime::fixtures::{TinyBert, TinyModel};

    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/__fuzz__/model_file/corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    let small = |m: TinyModel| TinyModel { layers: 1, ..m.with_shape(32, 2, 1, 16, 32) };
    small(TinyModel::qwen2()).write(&corpus.join("qwen2.gguf")).unwrap();
    small(TinyModel::gemma3()).write(&corpus.join("gemma3.gguf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pack_dir = |checkpoint: &std::path::Path, out: &str| {
        let files: BTreeMap<String, String> = pack::DIRECTORY_FILES
            .iter()
            .filter_map(|(name, _)| Some(((*name).to_owned(), std::fs::read_to_string(checkpoint.join(name)).ok()?)))
            .collect();
        pack::pack(&checkpoint.join(pack::WEIGHTS_FILE), &files, &corpus.join(out)).unwrap();
    };
    let llama = dir.path().join("llama");
    small(TinyModel::llama()).write_hf(&llama, DType::F16).unwrap();
    pack_dir(&llama, "llama.safetensors");
    let bert = dir.path().join("bert");
    TinyBert { layers: 1, intermediate: 32, ..TinyBert::default() }.write_dir(&bert).unwrap();
    pack_dir(&bert, "bert.safetensors");
}
