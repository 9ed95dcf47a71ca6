//! Greedy generation from a GGUF file on the command line, with timings:
//! `cargo run --release --example generate -- model.gguf "prompt" [max_tokens] [--chat]`.

use std::path::PathBuf;
#[allow(clippy::disallowed_types)] // A command-line timer, not scheduling logic.
use std::time::Instant;

use greenthread_core::{ChatMessage, Role, SamplingParams};
use greenthread_node_runtime::builtin::{BuiltinModel, LoadOptions, load_gguf};
use greenthread_node_runtime::{GenerateRequest, GenerationEvent, ModelInstance};

#[allow(clippy::disallowed_types)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, prompt, rest @ ..] = args.as_slice() else {
        return Err("usage: generate MODEL.gguf PROMPT [MAX_TOKENS] [--chat]".into());
    };
    let max_tokens: u32 = rest.iter().find_map(|a| a.parse().ok()).unwrap_or(32);
    let chat = rest.iter().any(|a| a == "--chat");
    let started = Instant::now();
    let loaded = load_gguf(&PathBuf::from(path), &LoadOptions::default(), &candle_core::Device::Cpu)?;
    eprintln!("loaded {} in {:.2?}", loaded.host.info.architecture, started.elapsed());
    let model = BuiltinModel::start(loaded, 1, "cli")?;
    let tokens = if chat {
        model.chat_prompt(&[ChatMessage::text(Role::User, prompt.as_str())], None)?
    } else {
        model.text_prompt(prompt)
    };
    eprintln!("prompt: {} tokens {:?}", tokens.len(), &tokens[..tokens.len().min(16)]);
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    rt.block_on(async {
        let started = Instant::now();
        let mut first = None;
        let mut stream = model.generate(GenerateRequest {
            prompt: tokens,
            sampling: SamplingParams::greedy(),
            max_tokens: Some(max_tokens),
            stop: Vec::new(),
            grammar: None,
            logprobs: None,
        })?;
        while let Some(event) = stream.next().await {
            match event {
                GenerationEvent::Text(t) => {
                    first.get_or_insert_with(|| started.elapsed());
                    print!("{t}");
                }
                GenerationEvent::Done { finish, usage } => {
                    let total = started.elapsed();
                    let ttft = first.unwrap_or(total);
                    let decode = usage.completion_tokens.saturating_sub(1) as f64 / (total - ttft).as_secs_f64();
                    println!();
                    eprintln!("{finish:?} {usage:?}; first token {ttft:.2?}, then {decode:.1} tok/s");
                }
                GenerationEvent::Failed { message, .. } => return Err(message.into()),
                GenerationEvent::Logprob(_) => {}
            }
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
