//! The thread that owns a loaded model and runs every sequence sent to it in
//! shared forward passes (continuous batching): new requests join between
//! steps, finished or cancelled ones leave, and each gets its tokens as soon
//! as they are sampled.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};

use greenthread_core::{FinishReason, Usage};
use tokio::sync::mpsc;

use super::kv_cache::SeqCache;
use super::plan::{STEP_TOKEN_BUDGET, plan_step};
use super::transformer::{BatchItem, Transformer};
use crate::engine::GenerationEvent;
use crate::sampler::Sampler;
use crate::text_stream::{Step, TextStream};
use crate::tokenizer::Tokenizer;

/// A generation handed to the worker, already validated.
pub struct NewSequence {
    pub prompt: Vec<u32>,
    pub sampler: Sampler,
    pub max_tokens: u32,
    pub stops: Vec<String>,
    pub events: mpsc::UnboundedSender<GenerationEvent>,
}

struct Sequence {
    /// Prompt, then generated tokens; `cache.len()` of them are processed.
    tokens: Vec<u32>,
    prompt_len: usize,
    cache: SeqCache,
    sampler: Sampler,
    text: TextStream,
    max_tokens: u32,
    generated: u32,
    events: mpsc::UnboundedSender<GenerationEvent>,
}

impl Sequence {
    fn pending(&self) -> usize {
        self.tokens.len() - self.cache.len()
    }

    fn usage(&self) -> Usage {
        Usage { prompt_tokens: self.prompt_len as u32, completion_tokens: self.generated }
    }

    fn send(&self, event: GenerationEvent) {
        // The receiver is gone when the client hung up; the sequence is
        // dropped at the next step, so a failed send needs no handling here.
        let _ = self.events.send(event);
    }
}

/// Limits of one worker.
#[derive(Debug, Clone, Copy)]
pub struct WorkerLimits {
    /// Sequences generating at once; more wait in order of arrival.
    pub max_sequences: usize,
    /// Context window, in tokens.
    pub context_length: usize,
}

/// Runs until every sender of `rx` is dropped.
pub fn run(
    model: Transformer,
    tokenizer: &Tokenizer,
    mut rx: mpsc::UnboundedReceiver<NewSequence>,
    limits: WorkerLimits,
) {
    let mut waiting: VecDeque<NewSequence> = VecDeque::new();
    let mut active: Vec<Sequence> = Vec::new();
    loop {
        if active.is_empty() && waiting.is_empty() {
            match rx.blocking_recv() {
                Some(new) => waiting.push_back(new),
                None => return,
            }
        }
        while let Ok(new) = rx.try_recv() {
            waiting.push_back(new);
        }
        // Clients that hung up free their slot and cache now.
        active.retain(|s| !s.events.is_closed());
        waiting.retain(|s| !s.events.is_closed());
        while active.len() < limits.max_sequences
            && let Some(new) = waiting.pop_front()
        {
            active.push(Sequence {
                prompt_len: new.prompt.len(),
                cache: model.new_cache(limits.context_length),
                tokens: new.prompt,
                sampler: new.sampler,
                text: TextStream::new(new.stops),
                max_tokens: new.max_tokens,
                generated: 0,
                events: new.events,
            });
        }
        if active.is_empty() {
            continue;
        }
        step(&model, tokenizer, &mut active, limits);
    }
}

/// One forward pass over the planned part of every active sequence, then
/// sampling for those whose pending tokens are all processed.
fn step(model: &Transformer, tokenizer: &Tokenizer, active: &mut Vec<Sequence>, limits: WorkerLimits) {
    let pending: Vec<usize> = active.iter().map(Sequence::pending).collect();
    let plan = plan_step(&pending, STEP_TOKEN_BUDGET);
    let scheduled: Vec<usize> = (0..active.len()).filter(|&i| plan[i] > 0).collect();
    let sampled: Vec<usize> = scheduled.iter().copied().filter(|&i| plan[i] == pending[i]).collect();

    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut batch: Vec<BatchItem<'_>> = Vec::with_capacity(scheduled.len());
        for (i, seq) in active.iter_mut().enumerate() {
            if plan[i] == 0 {
                continue;
            }
            let from = seq.cache.len();
            let Sequence { tokens, cache, .. } = seq;
            batch.push(BatchItem { tokens: &tokens[from..from + plan[i]], cache, want_logits: plan[i] == pending[i] });
        }
        model.forward(&mut batch).and_then(|logits| match logits {
            Some(l) => Ok(l.to_vec2::<f32>()?),
            None => Ok(Vec::new()),
        })
    }));
    let logits = match result {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => return fail(active, &scheduled, &e.to_string()),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic in forward pass".into());
            return fail(active, &scheduled, &message);
        }
    };

    let mut finished = Vec::new();
    for (&i, mut row) in sampled.iter().zip(logits) {
        let seq = &mut active[i];
        let token = seq.sampler.sample(&mut row, tokenizer);
        seq.generated += 1;
        if let Some(finish) = advance(seq, tokenizer, token, limits.context_length) {
            let tail = seq.text.finish();
            if !tail.is_empty() && !matches!(finish, FinishReason::StopSequence(_)) {
                seq.send(GenerationEvent::Text(tail));
            }
            seq.send(GenerationEvent::Done { finish, usage: seq.usage() });
            finished.push(i);
        }
    }
    remove(active, &finished);
}

/// Adds `token` to `seq`, sends its text, and says whether the sequence ended.
fn advance(seq: &mut Sequence, tokenizer: &Tokenizer, token: u32, context: usize) -> Option<FinishReason> {
    if tokenizer.is_end_of_generation(token) {
        return Some(FinishReason::EndOfTurn);
    }
    match seq.text.push(tokenizer.piece(token)) {
        Step::Text(text) => {
            if !text.is_empty() {
                seq.send(GenerationEvent::Text(text));
            }
        }
        Step::Stopped { text, stop } => {
            if !text.is_empty() {
                seq.send(GenerationEvent::Text(text));
            }
            return Some(FinishReason::StopSequence(stop));
        }
    }
    if seq.generated >= seq.max_tokens {
        return Some(FinishReason::MaxTokens);
    }
    seq.tokens.push(token);
    if seq.tokens.len() >= context {
        return Some(FinishReason::ContextFull);
    }
    None
}

fn fail(active: &mut Vec<Sequence>, indices: &[usize], message: &str) {
    tracing::error!(error = message, sequences = indices.len(), "Forward pass failed; failing its sequences");
    for &i in indices {
        let seq = &active[i];
        seq.send(GenerationEvent::Failed { message: message.to_owned(), usage: seq.usage() });
    }
    remove(active, indices);
}

/// Removes the sequences at `indices`, keeping the others in arrival order.
fn remove(active: &mut Vec<Sequence>, indices: &[usize]) {
    let mut i = 0;
    active.retain(|_| {
        let keep = !indices.contains(&i);
        i += 1;
        keep
    });
}
