//! The thread that owns a loaded model and runs every sequence sent to it in
//! shared forward passes (continuous batching): new requests join between
//! steps, finished or cancelled ones leave, and each gets its tokens as soon
//! as they are sampled. Sampling under a grammar searches the vocabulary and
//! can take far longer than a step, so it runs on a thread of its own while
//! the other sequences go on; the sequence rejoins when its token is back.
//! A sequence that ends leaves its KV cache behind for prompts that start
//! the same way (see `prefix`).

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use greenthread_core::{FinishReason, Usage};
use tokio::sync::mpsc;

use super::host::ModelHost;
use super::kv_cache::SeqCache;
use super::plan::{STEP_BUDGET, plan_step};
use super::prefix::{Retained, best_shared_prefix};
use super::transformer::{BatchItem, Transformer};
use crate::engine::{GenerationEvent, TokenLogprob, TokenText};
use crate::sampler::Sampler;
use crate::text_stream::{Step, TextStream};
use crate::tokenizer::Tokenizer;

/// A generation handed to the worker, already validated.
pub struct NewSequence {
    pub prompt: Vec<u32>,
    pub sampler: Sampler,
    pub max_tokens: u32,
    pub stops: Vec<String>,
    pub events: mpsc::Sender<GenerationEvent>,
}

/// What reaches the worker.
pub enum Inbox {
    New(NewSequence),
    /// A token sampled off the worker, with the sampler that drew it.
    Sampled {
        id: u64,
        sampler: Sampler,
        token: u32,
    },
}

struct Sequence {
    id: u64,
    /// Prompt, then generated tokens; `cache.len()` of them are processed.
    tokens: Vec<u32>,
    prompt_len: usize,
    cache: SeqCache,
    /// `None` while a token is being sampled off the worker.
    sampler: Option<Sampler>,
    text: TextStream,
    max_tokens: u32,
    generated: u32,
    events: mpsc::Sender<GenerationEvent>,
}

impl Sequence {
    /// Tokens to run through the model; none while its sample is away.
    fn pending(&self) -> usize {
        if self.sampler.is_none() { 0 } else { self.tokens.len() - self.cache.len() }
    }

    fn usage(&self) -> Usage {
        Usage { prompt_tokens: self.prompt_len as u32, completion_tokens: self.generated }
    }

    fn send(&self, event: GenerationEvent) {
        // The receiver is gone when the client hung up; the sequence is
        // dropped at the next step, so a failed send needs no handling here.
        // The channel has room for every event a sequence can send
        // (GenerationStream::capacity), so it is never full.
        let _ = self.events.try_send(event);
    }
}

/// What the worker is doing, published after each step for the metrics.
/// One per model, kept across its sleeps: the prefix counters only grow.
#[derive(Debug, Default)]
pub struct Gauges {
    running: AtomicUsize,
    waiting: AtomicUsize,
    kv_tokens: AtomicUsize,
    prefix_queried_tokens: AtomicU64,
    prefix_hit_tokens: AtomicU64,
}

impl Gauges {
    fn publish(&self, active: &[Sequence], waiting: usize) {
        self.running.store(active.len(), Ordering::Relaxed);
        self.waiting.store(waiting, Ordering::Relaxed);
        self.kv_tokens.store(active.iter().map(|s| s.cache.len()).sum(), Ordering::Relaxed);
    }

    pub fn read(&self, limits: WorkerLimits) -> crate::engine::EngineLoad {
        crate::engine::EngineLoad {
            running: self.running.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            kv_tokens: self.kv_tokens.load(Ordering::Relaxed),
            kv_capacity: limits.max_sequences * limits.context_length,
            prefix_queried_tokens: self.prefix_queried_tokens.load(Ordering::Relaxed),
            prefix_hit_tokens: self.prefix_hit_tokens.load(Ordering::Relaxed),
        }
    }

    fn count_prefix(&self, prompt: usize, reused: usize) {
        self.prefix_queried_tokens.fetch_add(prompt as u64, Ordering::Relaxed);
        self.prefix_hit_tokens.fetch_add(reused as u64, Ordering::Relaxed);
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

/// The worker's view of its model and its own inbox.
struct Worker {
    model: Transformer,
    host: Arc<ModelHost>,
    /// Where off-worker samples are sent back; weak, so that the worker
    /// still ends once every outside sender is gone.
    inbox: mpsc::WeakSender<Inbox>,
    limits: WorkerLimits,
    next_id: u64,
    /// Caches of ended sequences, in places no running sequence uses.
    retained: Retained,
    gauges: Arc<Gauges>,
}

/// Runs until every sender of `rx` is dropped and no sample is away,
/// publishing what it does to `gauges` after every step.
pub fn run(
    model: Transformer,
    host: Arc<ModelHost>,
    mut rx: mpsc::Receiver<Inbox>,
    inbox: mpsc::WeakSender<Inbox>,
    limits: WorkerLimits,
    gauges: Arc<Gauges>,
) {
    let mut worker = Worker { model, host, inbox, limits, next_id: 0, retained: Retained::default(), gauges };
    let mut waiting: VecDeque<NewSequence> = VecDeque::new();
    let mut active: Vec<Sequence> = Vec::new();
    loop {
        let admissible = !waiting.is_empty() && active.len() < limits.max_sequences;
        if !admissible && active.iter().all(|s| s.sampler.is_none()) {
            match rx.blocking_recv() {
                Some(message) => worker.receive(message, &mut waiting, &mut active),
                None => return,
            }
        }
        while let Ok(message) = rx.try_recv() {
            worker.receive(message, &mut waiting, &mut active);
        }
        // Clients that hung up free their place now; what their caches hold stays for reuse.
        let hung_up: Vec<usize> = (0..active.len()).filter(|&i| active[i].events.is_closed()).collect();
        worker.retire(&mut active, &hung_up);
        waiting.retain(|s| !s.events.is_closed());
        while active.len() < limits.max_sequences
            && let Some(new) = waiting.pop_front()
        {
            let cache = worker.cache_for(&new.prompt, &active);
            worker.next_id += 1;
            active.push(Sequence {
                id: worker.next_id,
                prompt_len: new.prompt.len(),
                cache,
                tokens: new.prompt,
                sampler: Some(new.sampler),
                text: TextStream::new(new.stops),
                max_tokens: new.max_tokens,
                generated: 0,
                events: new.events,
            });
        }
        if active.iter().any(|s| s.pending() > 0) {
            worker.step(&mut active);
        }
        worker.gauges.publish(&active, waiting.len());
    }
}

impl Worker {
    /// A cache for `prompt`, about to run beside `active`: the longest head
    /// it shares with a retained cache (taken over, no copy) or with a
    /// running sequence (its pages shared), or an empty one. Retained caches make way
    /// before any copy, so with the new sequence's there are never more than
    /// `max_sequences` caches alive.
    fn cache_for(&mut self, prompt: &[u32], active: &[Sequence]) -> SeqCache {
        let retained = self.retained.len();
        let running = active.iter().map(|s| &s.tokens[..s.cache.len()]);
        let shared = best_shared_prefix(prompt, self.retained.tokens().chain(running));
        let free_places = self.limits.max_sequences - active.len() - 1;
        let cache = match shared {
            Some((i, tokens)) if i < retained => self.retained.take(i).map(|mut cache| {
                cache.truncate(tokens);
                cache
            }),
            Some((i, tokens)) => {
                self.retained.shrink_to(free_places);
                SeqCache::prefix_of(&active[i - retained].cache, tokens)
                    .inspect_err(|e| {
                        // Nothing is lost: the prompt is computed in full instead.
                        tracing::warn!(error = %e, "Cannot share a cached prompt head");
                    })
                    .ok()
            }
            None => None,
        };
        self.retained.shrink_to(free_places);
        self.gauges.count_prefix(prompt.len(), cache.as_ref().map_or(0, SeqCache::len));
        cache.unwrap_or_else(|| self.model.new_cache(self.limits.context_length))
    }

    /// Removes the sequences at `indices` (ended, their final events sent)
    /// and keeps their caches for prompts that start the same way.
    fn retire(&mut self, active: &mut Vec<Sequence>, indices: &[usize]) {
        let mut i = 0;
        let mut ended = Vec::new();
        active.retain_mut(|seq| {
            let keep = !indices.contains(&i);
            i += 1;
            if !keep {
                let mut tokens = std::mem::take(&mut seq.tokens);
                tokens.truncate(seq.cache.len());
                let cache = std::mem::replace(&mut seq.cache, self.model.new_cache(0));
                ended.push((tokens, cache));
            }
            keep
        });
        for (tokens, cache) in ended {
            self.retained.keep(tokens, cache);
        }
        self.retained.shrink_to(self.limits.max_sequences - active.len());
    }

    fn receive(&mut self, message: Inbox, waiting: &mut VecDeque<NewSequence>, active: &mut Vec<Sequence>) {
        match message {
            Inbox::New(new) => waiting.push_back(new),
            Inbox::Sampled { id, sampler, token } => {
                // The sequence is gone if its client hung up meanwhile.
                if let Some(i) = active.iter().position(|s| s.id == id) {
                    active[i].sampler = Some(sampler);
                    if self.take_token(&mut active[i], token) {
                        self.retire(active, &[i]);
                    }
                }
            }
        }
    }

    /// One forward pass over the planned part of every active sequence, then
    /// sampling for those whose pending tokens are all processed.
    fn step(&mut self, active: &mut Vec<Sequence>) {
        let pending: Vec<usize> = active.iter().map(Sequence::pending).collect();
        let plan = plan_step(&pending, STEP_BUDGET);
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
                batch.push(BatchItem {
                    tokens: &tokens[from..from + plan[i]],
                    cache,
                    want_logits: plan[i] == pending[i],
                });
            }
            self.model.forward(&mut batch).and_then(|logits| match logits {
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
        for (&i, row) in sampled.iter().zip(logits) {
            if let Some(done) = self.sample(&mut active[i], row) {
                if done {
                    finished.push(i);
                }
            } else {
                let seq = &active[i];
                seq.send(GenerationEvent::Failed {
                    message: "cannot start a thread to sample under the output grammar".into(),
                    usage: seq.usage(),
                });
                finished.push(i);
            }
        }
        self.retire(active, &finished);
    }

    /// Samples `seq`'s next token from `row`: here, or, under a grammar, on
    /// a thread of its own that sends the token back. `Some(true)` when the
    /// sequence ended, `None` when the thread could not start.
    fn sample(&self, seq: &mut Sequence, mut row: Vec<f32>) -> Option<bool> {
        let constrained = seq.sampler.as_ref().is_some_and(Sampler::is_constrained);
        let back = if constrained { self.inbox.upgrade() } else { None };
        let Some(mut sampler) = seq.sampler.take() else { return Some(false) };
        let Some(back) = back else {
            let token = sampler.sample(&mut row, &self.host.tokenizer);
            seq.sampler = Some(sampler);
            return Some(self.take_token(seq, token));
        };
        let (id, host) = (seq.id, self.host.clone());
        // A thread per constrained token: starting one costs tens of
        // microseconds against tens of milliseconds per token, and a slow
        // grammar then holds only its own sequence.
        std::thread::Builder::new()
            .name("gt-grammar".into())
            .stack_size(crate::constraint::GRAMMAR_STACK)
            .spawn(move || {
                let token = sampler.sample(&mut row, &host.tokenizer);
                // Waits only while the inbox is full, which the worker drains
                // on every step; never on the worker's own thread.
                let _ = back.blocking_send(Inbox::Sampled { id, sampler, token });
            })
            .ok()
            .map(|_| false)
    }

    /// Counts `token` for `seq`, sends its text, and says whether `seq` ended
    /// (its final events sent).
    fn take_token(&self, seq: &mut Sequence, token: u32) -> bool {
        let tokenizer = &self.host.tokenizer;
        if let Some(drawn) = seq.sampler.as_mut().and_then(Sampler::take_logprobs)
            && !tokenizer.is_end_of_generation(token)
        {
            let text = |id: u32| TokenText::new(tokenizer.piece(id));
            let top = drawn.top.iter().map(|&(id, logprob)| (text(id), logprob)).collect();
            seq.send(GenerationEvent::Logprob(TokenLogprob { token: text(token), logprob: drawn.logprob, top }));
        }
        seq.generated += 1;
        let cut_short = seq.sampler.as_ref().is_some_and(Sampler::cut_short);
        let Some(finish) = advance(seq, &self.host.tokenizer, token, self.limits.context_length, cut_short) else {
            return false;
        };
        let tail = seq.text.finish();
        if !tail.is_empty() && !matches!(finish, FinishReason::StopSequence(_)) {
            seq.send(GenerationEvent::Text(tail));
        }
        seq.send(GenerationEvent::Done { finish, usage: seq.usage() });
        true
    }
}

/// Adds `token` to `seq`, sends its text, and says whether the sequence
/// ended. `cut_short`: the token was drawn because the grammar allowed nothing else.
fn advance(
    seq: &mut Sequence,
    tokenizer: &Tokenizer,
    token: u32,
    context: usize,
    cut_short: bool,
) -> Option<FinishReason> {
    if tokenizer.is_end_of_generation(token) {
        return Some(if cut_short { FinishReason::GrammarExhausted } else { FinishReason::EndOfTurn });
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
