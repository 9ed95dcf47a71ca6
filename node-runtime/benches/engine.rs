//! Prompt and decode throughput of the builtin engine next to llama.cpp on
//! the same GGUF file, the same prompt tokens and the same thread count, in
//! one run. Not a test: `bench/engine.sh` runs it and prints a table.
//!
//! `cargo bench -p greenthread-node-runtime --bench engine -- MODEL.gguf [--prompt N] [--decode N] [--repeats N]`
//! Threads: `RAYON_NUM_THREADS` (both engines use it); llama.cpp answers
//! through `GREENTHREAD_LLAMA_PYTHON` (a Python with llama-cpp-python).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_types)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use candle_core::Device;
use greenthread_node_runtime::builtin::transformer::BatchItem;
use greenthread_node_runtime::builtin::{LoadOptions, load_gguf};
use greenthread_node_runtime::sampler::argmax;
use serde_json::json;

/// English text to build prompts from: the same ids go to both engines.
const TEXT: &str = "The history of computing is a story of people finding ways to make machines do arithmetic, \
then logic, then language. Early mechanical calculators added and multiplied; later, electronic computers \
ran programs stored in their own memory. Today a laptop holds models that write poems and code. ";

struct Args {
    model: PathBuf,
    prompt: usize,
    decode: usize,
    repeats: usize,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut a = Args { model: PathBuf::new(), prompt: 64, decode: 64, repeats: 3 };
    while let Some(arg) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse().ok()).expect("a number");
        match arg.as_str() {
            "--prompt" => a.prompt = num(),
            "--decode" => a.decode = num(),
            "--repeats" => a.repeats = num(),
            path => a.model = PathBuf::from(path),
        }
    }
    assert!(a.model.exists(), "usage: engine MODEL.gguf [--prompt N] [--decode N] [--repeats N]");
    a
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// (prefill tok/s, decode tok/s) per repeat, after one warm-up run.
/// Prefill time includes tokenizing `text` (to `prompt.len()` tokens), so a
/// slower tokenizer shows in the ratio; llama.cpp is handed the ids.
fn ours(path: &Path, text: &str, prompt: &[u32], decode: usize, repeats: usize) -> Timings {
    let started = Instant::now();
    let model = load_gguf(path, &LoadOptions::default(), &Device::Cpu).unwrap();
    let load_s = started.elapsed().as_secs_f64();
    let tokenizer = greenthread_node_runtime::builtin::read_tokenizer(path).unwrap();
    let t = &model.transformer;
    let (mut prefill, mut dec, mut tokenize) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..=repeats {
        let mut cache = t.new_cache(prompt.len() + decode + 8);
        let t0 = Instant::now();
        let mut ids = tokenizer.encode(text, false);
        ids.truncate(prompt.len());
        let tokenized = t0.elapsed().as_secs_f64();
        assert_eq!(ids, prompt, "the timed tokenization gives the ids llama.cpp is handed");
        let mut batch = [BatchItem { tokens: &ids, cache: &mut cache, want_logits: true }];
        let logits = t.forward(&mut batch).unwrap().unwrap().to_vec2::<f32>().unwrap();
        let t1 = Instant::now();
        let mut token = argmax(&logits[0]);
        for _ in 0..decode {
            let step = [token];
            let mut batch = [BatchItem { tokens: &step, cache: &mut cache, want_logits: true }];
            let logits = t.forward(&mut batch).unwrap().unwrap().to_vec2::<f32>().unwrap();
            token = argmax(&logits[0]);
        }
        let t2 = Instant::now();
        if run > 0 {
            prefill.push(prompt.len() as f64 / (t1 - t0).as_secs_f64());
            dec.push(decode as f64 / (t2 - t1).as_secs_f64());
            tokenize.push(tokenized);
        }
    }
    Timings { prefill, decode: dec, tokenize, load_s }
}

struct Timings {
    prefill: Vec<f64>,
    decode: Vec<f64>,
    /// Seconds spent tokenizing the prompt text, per run.
    tokenize: Vec<f64>,
    load_s: f64,
}

fn llama_cpp(path: &Path, prompt: &[u32], decode: usize, repeats: usize, threads: usize) -> (Vec<f64>, Vec<f64>) {
    let python = std::env::var("GREENTHREAD_LLAMA_PYTHON").expect("GREENTHREAD_LLAMA_PYTHON: see bench/engine.sh");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/llama_cpp_reference.py");
    let mut child = Command::new(python).arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let req = json!({"op": "bench", "model": path, "prompt": prompt, "n": decode, "threads": threads, "repeats": repeats + 1});
    child.stdin.take().unwrap().write_all(req.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let skip_warmup = |k: &str| -> Vec<f64> { serde_json::from_value::<Vec<f64>>(v[k].clone()).unwrap()[1..].to_vec() };
    (skip_warmup("prefill_tok_s"), skip_warmup("decode_tok_s"))
}

fn main() {
    let a = args();
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let tokenizer = greenthread_node_runtime::builtin::read_tokenizer(&a.model).unwrap();
    let mut text = String::from(TEXT);
    while tokenizer.encode(&text, false).len() < a.prompt {
        text.push_str(TEXT);
    }
    let mut prompt = tokenizer.encode(&text, false);
    prompt.truncate(a.prompt);
    let ours = ours(&a.model, &text, &prompt, a.decode, a.repeats);
    let (ref_prefill, ref_decode) = llama_cpp(&a.model, &prompt, a.decode, a.repeats, threads);
    let (op, od, rp, rd) = (median(ours.prefill), median(ours.decode), median(ref_prefill), median(ref_decode));
    let (load_s, tokenize_us) = (ours.load_s, median(ours.tokenize) * 1e6);
    let name = a.model.file_name().unwrap().to_string_lossy();
    println!("| {name} | {threads} | prefill {} tok | {op:.1} | {rp:.1} | {:.2}× |", a.prompt, op / rp);
    println!("| {name} | {threads} | decode {} tok | {od:.1} | {rd:.1} | {:.2}× |", a.decode, od / rd);
    eprintln!("(builtin engine load: {load_s:.2} s; tokenizing the prompt text: {tokenize_us:.0} µs)");
}
