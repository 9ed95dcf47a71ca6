//! The builtin engine against llama.cpp on the same GGUF files: token ids,
//! logits and greedy text must agree.
//!
//! These tests need llama-cpp-python (`GREENTHREAD_LLAMA_PYTHON`, a Python with
//! `llama_cpp`) and the real models (`GREENTHREAD_MODELS`); `scripts/test.sh`
//! provides both and runs them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use candle_core::Device;
use candle_core::quantized::GgmlDType;
use greenthread_node_runtime::builtin::transformer::BatchItem;
use greenthread_node_runtime::builtin::{LoadOptions, load_gguf, read_tokenizer};
use greenthread_node_runtime::fixtures::TinyModel;
use serde_json::{Value, json};

fn env_path(var: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{var} is not set: run these tests through scripts/test.sh"))
}

fn real_model(file: &str) -> PathBuf {
    let path = env_path("GREENTHREAD_MODELS").join(file);
    assert!(path.exists(), "{} is missing; scripts/fetch-model.sh fetches it", path.display());
    path
}

const QWEN: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";

/// Asks llama.cpp (scripts/llama_cpp_reference.py).
fn reference(request: Value) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/llama_cpp_reference.py");
    let mut child = Command::new(env_path("GREENTHREAD_LLAMA_PYTHON"))
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the llama.cpp reference script");
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "llama.cpp reference failed: {:?}", out.status);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn as_ids(v: &Value) -> Vec<Vec<u32>> {
    serde_json::from_value(v.clone()).unwrap()
}

const TEXTS: &[&str] = &[
    "Hello world",
    " leading space",
    "The capital of France is",
    "<|im_start|>user\nhi<|im_end|>\n",
    "<start_of_turn>user\nWrite a poem<end_of_turn>\n<start_of_turn>model\n",
    "numbers 1234567 and 3.14159",
    "unicode: héllo wörld 漢字 🤖 emoji",
    "tabs\tand\n\nnewlines\r\n  indented   ",
    "it's don't I'LL we've",
    "def f(x):\n    return x**2  # comment",
    "   ",
    "",
    "a\u{a0}b ｆｕｌｌｗｉｄｔｈ",
    "<tool_call>\n{\"name\": \"f\"}\n</tool_call>",
    "Straße naïve résumé ÆØÅ Ελληνικά русский العربية हिन्दी 日本語のテキスト 한국어",
    "fn main() {\n\tlet v: Vec<u8> = (0..=255).collect();\n\tprintln!(\"{v:?}\"); // 🦀🦀\n}\n",
    "The history of computing is a story of people finding ways to make machines do arithmetic, then logic, \
     then language. Early mechanical calculators in the seventeenth century could add and subtract; by the \
     nineteenth, designs for programmable engines described memory, a processing unit and conditional jumps.",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa    ............ !!!??? '' \"\"\" ``` ~~~",
    "\u{0}\u{1}\u{7f} zero\u{200b}width <unk> <s> </s> <|endoftext|> <0x41>",
];

#[test]
#[ignore = "needs llama-cpp-python and the real models; run by scripts/test.sh"]
fn tokenizers_match_llama_cpp_on_the_real_models() {
    for file in [QWEN, GEMMA] {
        let path = real_model(file);
        let ours = read_tokenizer(&path).unwrap();
        for special in [true, false] {
            let request = json!({"op": "tokenize", "model": path, "texts": TEXTS, "special": special});
            let theirs = as_ids(&reference(request)["tokens"]);
            for (text, expected) in TEXTS.iter().zip(theirs) {
                assert_eq!(ours.encode(text, special), expected, "{file}, special {special}: {text:?}");
            }
        }
    }
}

/// Last-position logits of each prompt from the builtin engine.
fn our_logits(path: &Path, prompts: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let model = load_gguf(path, &LoadOptions::default(), &Device::Cpu).unwrap();
    prompts
        .iter()
        .map(|p| {
            let mut cache = model.transformer.new_cache(512);
            let mut batch = [BatchItem { tokens: p, cache: &mut cache, want_logits: true }];
            let logits = model.transformer.forward(&mut batch).unwrap().unwrap();
            logits.to_vec2::<f32>().unwrap().remove(0)
        })
        .collect()
}

/// Largest difference relative to the spread of the reference logits.
fn relative_error(ours: &[f32], theirs: &[f32]) -> f32 {
    assert_eq!(ours.len(), theirs.len());
    let max_diff = ours.iter().zip(theirs).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    let (lo, hi) = theirs.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    max_diff / (hi - lo).max(1e-6)
}

#[test]
#[ignore = "needs llama-cpp-python; run by scripts/test.sh"]
fn tiny_models_of_every_architecture_match_llama_cpp_logits() {
    let dir = tempfile::tempdir().unwrap();
    let models = [
        ("qwen2", TinyModel::qwen2()),
        ("llama", TinyModel::llama()),
        ("gemma3", TinyModel::gemma3()),
        ("qwen2-q4k", TinyModel::qwen2().with_shape(256, 4, 2, 64, 512).with_dtype(GgmlDType::Q4K)),
    ];
    for (label, model) in models {
        let path = dir.path().join(format!("{label}.gguf"));
        model.write(&path).unwrap();
        // Long enough to cross Gemma's 8-token sliding window.
        let vocab = model.vocab_size() as u32;
        let prompts: Vec<Vec<u32>> =
            vec![(0..5).map(|i| 40 + i).collect(), (0..37).map(|i| (i * 7 + 11) % (vocab - 10) + 6).collect()];
        let theirs: Vec<Vec<f32>> = serde_json::from_value(
            reference(json!({"op": "logits", "model": path, "prompts": prompts}))["logits"].clone(),
        )
        .unwrap();
        for ((ours, theirs), prompt) in our_logits(&path, &prompts).iter().zip(&theirs).zip(&prompts) {
            let err = relative_error(ours, theirs);
            assert!(
                err < 0.02,
                "{label}: logits differ from llama.cpp by {err:.4} of their range (prompt of {})",
                prompt.len()
            );
        }
    }
}

/// How far below our top logit llama.cpp's greedy choice may be and still
/// count as the same choice: the engines round differently (llama.cpp's GELU
/// goes through an f16 table; switching its KV cache from f16 to f32 alone
/// moves Gemma 3's logits by about 0.3).
const NEAR_TIE: f32 = 0.5;

#[test]
#[ignore = "needs llama-cpp-python and the real models; run by scripts/test.sh"]
fn real_models_follow_llama_cpp_greedy_continuations() {
    for (file, texts) in [
        (
            QWEN,
            &[
                "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
                "def fibonacci(n):",
            ][..],
        ),
        (GEMMA, &["The capital of France is", "Once upon a time"][..]),
    ] {
        let path = real_model(file);
        let tokenizer = read_tokenizer(&path).unwrap();
        let prompts: Vec<Vec<u32>> = texts.iter().map(|t| tokenizer.encode(t, true)).collect();
        let theirs = as_ids(&reference(json!({"op": "greedy", "model": path, "prompts": prompts, "n": 24}))["tokens"]);
        let model = load_gguf(&path, &LoadOptions::default(), &Device::Cpu).unwrap();
        for (prompt, expected) in prompts.iter().zip(theirs) {
            // Teacher forcing: feed llama.cpp's tokens and check that each is
            // our greedy choice too, or within rounding of it.
            let mut cache = model.transformer.new_cache(512);
            let mut next = prompt.clone();
            let mut exact = 0;
            for (step, &want) in expected.iter().enumerate() {
                let mut batch = [BatchItem { tokens: &next, cache: &mut cache, want_logits: true }];
                let logits =
                    model.transformer.forward(&mut batch).unwrap().unwrap().to_vec2::<f32>().unwrap().remove(0);
                let ours = greenthread_node_runtime::sampler::argmax(&logits);
                exact += usize::from(ours == want);
                let gap = logits[ours as usize] - logits[want as usize];
                assert!(
                    gap <= NEAR_TIE,
                    "{file}: after {:?} llama.cpp picks {:?} but we rank it {gap:.3} below {:?}",
                    tokenizer.decode(&[prompt.as_slice(), &expected[..step]].concat()),
                    tokenizer.decode(&[want]),
                    tokenizer.decode(&[ours]),
                );
                next = vec![want];
            }
            // Every step is within rounding (above); most are the very same token.
            assert!(exact * 4 >= expected.len() * 3, "{file}: only {exact} of {} greedy tokens agree", expected.len());
        }
    }
}
