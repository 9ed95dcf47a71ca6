//! Constrained decoding with llguidance: an [`OutputGrammar`] compiled
//! against a model's vocabulary into a [`Constraint`] that gives, token by
//! token, the exact set of tokens that keep the output inside the grammar —
//! a mask over the whole vocabulary, whatever the tokenizer.

use std::sync::{Arc, LazyLock};

use greenthread_core::grammar::OutputGrammar;
use llguidance::api::{ParserLimits, TopLevelGrammar};
use llguidance::toktrie::{ApproximateTokEnv, SimpleVob, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};

use crate::vocabulary::Vocabulary;

/// What one request's grammar may cost. llguidance's defaults are made for
/// trusted grammars; a request's is bounded tighter: its size (symbols of
/// its productions, ~1,000 per kilobyte of schema) and the work of building
/// its lexer; the work of one token's mask keeps llguidance's bound.
fn limits() -> ParserLimits {
    ParserLimits {
        max_grammar_size: 100_000,
        initial_lexer_fuel: 500_000,
        max_lexer_states: 100_000,
        verbose_errors: false,
        ..ParserLimits::default()
    }
}

/// Compiles grammars for one vocabulary (built once per model: the
/// vocabulary's token trie and llguidance's slices of it).
pub struct Grammars {
    factory: ParserFactory,
    eos: u32,
}

impl std::fmt::Debug for Grammars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grammars").field("eos", &self.eos).finish_non_exhaustive()
    }
}

impl Grammars {
    /// For the `size` tokens of `vocab`. A token that writes no bytes (a
    /// control token) is special: no grammar's text matches it; the end
    /// token stands for every token that ends the generation.
    ///
    /// # Errors
    /// When the vocabulary has no end token, or llguidance refuses it.
    pub fn for_vocabulary(vocab: &dyn Vocabulary, size: usize) -> Result<Self, String> {
        let eos = vocab.end_token().ok_or("the vocabulary has no end-of-generation token")?;
        let words: Vec<Vec<u8>> = (0..size as u32)
            .map(|id| {
                let piece = vocab.piece(id);
                if piece.is_empty() || vocab.ends_generation(id) {
                    let mut word = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    word.extend(format!("<|special-{id}|>").bytes());
                    word
                } else {
                    piece.to_vec()
                }
            })
            .collect();
        let trie = TokTrie::from(&TokRxInfo::new(size as u32, eos), &words);
        Self::for_env(Arc::new(ApproximateTokEnv::new(trie)), eos)
    }

    fn for_env(env: TokEnv, eos: u32) -> Result<Self, String> {
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
        *factory.limits_mut() = limits();
        factory.quiet();
        Ok(Self { factory, eos })
    }

    /// A constraint at the start of an output that must match `grammar`.
    ///
    /// # Errors
    /// llguidance's message for a grammar it cannot compile (an unknown
    /// keyword, an unsatisfiable schema, a grammar past the limits).
    pub fn constraint(&self, grammar: &OutputGrammar) -> Result<Constraint, String> {
        let top = match grammar {
            OutputGrammar::Lark(lark) => TopLevelGrammar::from_lark(lark.clone()),
            OutputGrammar::Regex(rx) => TopLevelGrammar::from_regex(rx),
        };
        let parser = on_a_deep_stack(|| self.factory.create_parser(top).map_err(|e| reason(&e.to_string())))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(reason(&e));
        }
        Ok(Constraint { matcher, eos: self.eos })
    }
}

/// Stack of the threads that compile grammars and compute their masks.
/// The compiler recurses over a grammar's structure; its input is bounded
/// (depth, size and fuel), and this leaves that recursion ample room
/// whatever thread asked, so no grammar can overflow a server's stack.
pub const GRAMMAR_STACK: usize = 64 << 20;

/// Runs `f` on a thread with a [`GRAMMAR_STACK`]-sized stack.
fn on_a_deep_stack<T: Send>(f: impl FnOnce() -> Result<T, String> + Send) -> Result<T, String> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("gt-grammar-compile".into())
            .stack_size(GRAMMAR_STACK)
            .spawn_scoped(scope, f)
            .map_err(|e| format!("cannot start a thread to compile the grammar: {e}"))?
            .join()
            .unwrap_or_else(|_| Err("the grammar compiler failed".into()))
    })
}

/// The reason in a compiler's message: its first line, without the
/// position in the generated grammar (the message goes on to quote the
/// grammar, which the caller wrote and need not read back).
fn reason(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    if first.contains("NoExtensionBias") {
        // The compiler's name for a grammar whose start has no way forward.
        return "no output can match it".into();
    }
    let without_position = match first.split_once("): ") {
        Some((position, rest)) if position.starts_with("at ") => rest,
        _ => first,
    };
    without_position.to_owned()
}

/// Whether `grammar` can be enforced at all, compiled against a vocabulary
/// of single bytes: what a request's grammar passes before the request is
/// accepted (its model compiles it again against its own vocabulary).
///
/// # Errors
/// Why it cannot: it does not compile, or no output can match it.
pub fn check(grammar: &OutputGrammar) -> Result<(), String> {
    static BYTES: LazyLock<Result<Grammars, String>> = LazyLock::new(|| {
        let env = ApproximateTokEnv::single_byte_env();
        let eos = env.tok_trie().eos_token();
        Grammars::for_env(env, eos)
    });
    let grammars = BYTES.as_ref().map_err(Clone::clone)?;
    let mut constraint = grammars.constraint(grammar)?;
    if constraint.allowed().map_err(|e| reason(&e))?.is_zero() {
        return Err("no output can match it".into());
    }
    Ok(())
}

/// Where one output stands in its grammar.
pub struct Constraint {
    matcher: Matcher,
    eos: u32,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint").field("eos", &self.eos).finish_non_exhaustive()
    }
}

impl Constraint {
    /// The tokens that may come next; [`Self::end_token`] among them when
    /// the output may end here.
    ///
    /// # Errors
    /// When the grammar can go no further (its parser failed or ran past
    /// its limits).
    pub fn allowed(&mut self) -> Result<SimpleVob, String> {
        // A finished grammar stops its parser: then only the end is allowed.
        self.matcher.compute_mask_or_eos().map_err(|e| e.to_string())
    }

    /// The token that stands for the end of the output in [`Self::allowed`].
    pub fn end_token(&self) -> u32 {
        self.eos
    }

    /// Takes `token` (one [`Self::allowed`] allowed).
    ///
    /// # Errors
    /// When the token leaves the grammar.
    pub fn advance(&mut self, token: u32) -> Result<(), String> {
        self.matcher.consume_token(token).map_err(|e| e.to_string())
    }

    /// Whether the output may end here.
    pub fn is_complete(&mut self) -> bool {
        self.matcher.is_stopped() || self.matcher.is_accepting().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests;
