//! A byte-level matcher over a [`Grammar`]: a set of parse stacks (one per
//! live alternative) advanced byte by byte, so the sampler can ask whether a
//! token's bytes may come next and whether the output may end here.

use std::sync::Arc;

use super::{Grammar, MAX_INDENT, MAX_NUMBER_BYTES, Node, NodeId};

/// Nesting beyond this is refused: no schema a model should fill is deeper,
/// and it bounds the work per byte.
const MAX_DEPTH: usize = 128;
/// Rules expanded for one byte before it is refused (guards grammars that
/// recurse without consuming input).
const MAX_EXPANSIONS: usize = 256;
/// Live alternatives kept; ambiguous schemas (unions of similar objects)
/// could otherwise multiply them.
const MAX_THREADS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Str {
    Open,
    Body,
    Escape,
    Hex(u8),
    /// Inside a multi-byte character: `left` more bytes, the next in `lo..=hi`.
    Utf8 {
        left: u8,
        lo: u8,
        hi: u8,
    },
}

/// What follows the first byte of a UTF-8 character, or `None` if it cannot
/// start one (overlong forms, surrogates and values past U+10FFFF excluded).
fn utf8_lead(b: u8) -> Option<Str> {
    let (left, lo, hi) = match b {
        0xC2..=0xDF => (1, 0x80, 0xBF),
        0xE0 => (2, 0xA0, 0xBF),
        0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
        0xED => (2, 0x80, 0x9F),
        0xF0 => (3, 0x90, 0xBF),
        0xF1..=0xF3 => (3, 0x80, 0xBF),
        0xF4 => (3, 0x80, 0x8F),
        _ => return None,
    };
    Some(Str::Utf8 { left, lo, hi })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Num {
    Start,
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

impl Num {
    fn accepting(self) -> bool {
        matches!(self, Self::Zero | Self::Int | Self::Frac | Self::ExpDigits)
    }

    fn next(self, b: u8, integer: bool) -> Option<Self> {
        let digit = b.is_ascii_digit();
        let fraction_ok = !integer;
        match (self, b) {
            (Self::Start, b'-') => Some(Self::Minus),
            (Self::Start | Self::Minus, b'0') => Some(Self::Zero),
            (Self::Start | Self::Minus, _) if digit => Some(Self::Int),
            (Self::Int, _) if digit => Some(Self::Int),
            (Self::Zero | Self::Int, b'.') if fraction_ok => Some(Self::Dot),
            (Self::Dot | Self::Frac, _) if digit => Some(Self::Frac),
            (Self::Zero | Self::Int | Self::Frac, b'e' | b'E') if fraction_ok => Some(Self::Exp),
            (Self::Exp, b'+' | b'-') => Some(Self::ExpSign),
            (Self::Exp | Self::ExpSign | Self::ExpDigits, _) if digit => Some(Self::ExpDigits),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Phase {
    Open,
    AfterOpen,
    AfterItem,
    AfterSep,
}

/// Progress inside one rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Frame {
    Start(NodeId),
    Literal { node: NodeId, pos: u16 },
    Ws { count: u8 },
    Str { state: Str, chars: u32, min: u32, max: Option<u32> },
    Num { state: Num, integer: bool, len: u8 },
    List { node: NodeId, phase: Phase, count: u32, ws: u8 },
}

type Stack = Vec<Frame>;

/// Where a generation stands in its grammar.
#[derive(Debug, Clone)]
pub struct Matcher {
    grammar: Arc<Grammar>,
    threads: Vec<Stack>,
}

/// A whitespace run after one space: nothing more may follow.
const AFTER_SPACE: u8 = u8::MAX;

/// The whitespace run's state after `b`, where `count` is 0 at its start,
/// [`AFTER_SPACE`] after a lone space, and `1 + indentation` after a line break.
fn ws_next(count: u8, b: u8) -> Option<u8> {
    match (count, b) {
        (0, b' ') => Some(AFTER_SPACE),
        (0, b'\n') => Some(1),
        (AFTER_SPACE, _) => None,
        (1.., b' ' | b'\t') if count <= MAX_INDENT => Some(count + 1),
        _ => None,
    }
}

impl Matcher {
    pub(super) fn new(grammar: Arc<Grammar>) -> Self {
        let root = grammar.root();
        Self { grammar, threads: vec![vec![Frame::Start(root)]] }
    }

    /// Consumes `bytes`; `false` (and a dead matcher) if they cannot come next.
    pub fn advance(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            let mut next: Vec<Stack> = Vec::new();
            for stack in std::mem::take(&mut self.threads) {
                let mut budget = MAX_EXPANSIONS;
                self.step(stack, b, &mut next, &mut budget);
            }
            next.truncate(MAX_THREADS);
            self.threads = next;
            if self.threads.is_empty() {
                return false;
            }
        }
        true
    }

    /// Whether `bytes` may come next, leaving the matcher as it is.
    pub fn accepts(&self, bytes: &[u8]) -> bool {
        !bytes.is_empty() && self.clone().advance(bytes)
    }

    /// Whether the output may end here.
    pub fn is_complete(&self) -> bool {
        self.threads.iter().any(|stack| stack.iter().all(|f| self.can_end(f)))
    }

    fn can_end(&self, frame: &Frame) -> bool {
        match frame {
            Frame::Start(id) => self.nullable(*id, 0),
            Frame::Ws { .. } => true,
            Frame::Num { state, .. } => state.accepting(),
            Frame::Literal { .. } | Frame::Str { .. } | Frame::List { .. } => false,
        }
    }

    fn nullable(&self, id: NodeId, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        match self.grammar.node(id) {
            Node::Literal(bytes) => bytes.is_empty(),
            Node::Ws => true,
            Node::Seq(items) => items.iter().all(|&i| self.nullable(i, depth + 1)),
            Node::Alt(options) => options.iter().any(|&i| self.nullable(i, depth + 1)),
            Node::String { .. } | Node::Number { .. } | Node::List { .. } => false,
        }
    }

    /// Feeds `b` to one stack, pushing every stack that accepts it onto `out`.
    fn step(&self, mut stack: Stack, b: u8, out: &mut Vec<Stack>, budget: &mut usize) {
        let push = |stack: Stack, out: &mut Vec<Stack>| {
            if stack.len() <= MAX_DEPTH && !out.contains(&stack) {
                out.push(stack);
            }
        };
        loop {
            if *budget == 0 {
                return;
            }
            *budget -= 1;
            let Some(top) = stack.pop() else { return };
            match top {
                Frame::Start(id) => match self.grammar.node(id) {
                    Node::Literal(bytes) if bytes.is_empty() => {}
                    Node::Literal(_) => stack.push(Frame::Literal { node: id, pos: 0 }),
                    Node::Seq(items) => stack.extend(items.iter().rev().map(|&i| Frame::Start(i))),
                    Node::Alt(options) => {
                        for &option in options {
                            let mut fork = stack.clone();
                            fork.push(Frame::Start(option));
                            self.step(fork, b, out, budget);
                        }
                        return;
                    }
                    Node::Ws => stack.push(Frame::Ws { count: 0 }),
                    Node::String { min, max } => {
                        stack.push(Frame::Str { state: Str::Open, chars: 0, min: *min, max: *max });
                    }
                    Node::Number { integer } => {
                        stack.push(Frame::Num { state: Num::Start, integer: *integer, len: 0 });
                    }
                    Node::List { .. } => stack.push(Frame::List { node: id, phase: Phase::Open, count: 0, ws: 0 }),
                },
                Frame::Literal { node, pos } => {
                    let Node::Literal(bytes) = self.grammar.node(node) else { return };
                    if bytes.get(pos as usize) != Some(&b) {
                        return;
                    }
                    if pos as usize + 1 < bytes.len() {
                        stack.push(Frame::Literal { node, pos: pos + 1 });
                    }
                    return push(stack, out);
                }
                Frame::Ws { count } => {
                    // Whitespace may continue this run or end it: both are tried.
                    if let Some(next) = ws_next(count, b) {
                        let mut more = stack.clone();
                        more.push(Frame::Ws { count: next });
                        push(more, out);
                    }
                }
                Frame::Str { state, chars, min, max } => {
                    let next = match (state, b) {
                        (Str::Open, b'"') => Str::Body,
                        (Str::Open, _) => return,
                        (Str::Body, b'"') if chars >= min => return push(stack, out),
                        (Str::Body, b'"') => return,
                        (Str::Body, _) if b < 0x20 => return,
                        (Str::Body, _) if max.is_some_and(|m| chars >= m) && !is_continuation(b) => return,
                        (Str::Body, b'\\') => Str::Escape,
                        (Str::Body, 0x00..=0x7F) => Str::Body,
                        (Str::Body, _) => match utf8_lead(b) {
                            Some(next) => next,
                            None => return,
                        },
                        (Str::Utf8 { left, lo, hi }, _) if (lo..=hi).contains(&b) => {
                            if left == 1 {
                                Str::Body
                            } else {
                                Str::Utf8 { left: left - 1, lo: 0x80, hi: 0xBF }
                            }
                        }
                        (Str::Utf8 { .. }, _) => return,
                        (Str::Escape, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Str::Body,
                        (Str::Escape, b'u') => Str::Hex(4),
                        (Str::Escape, _) => return,
                        (Str::Hex(n), _) if b.is_ascii_hexdigit() => {
                            if n == 1 {
                                Str::Body
                            } else {
                                Str::Hex(n - 1)
                            }
                        }
                        (Str::Hex(_), _) => return,
                    };
                    let counts = state == Str::Body && !is_continuation(b);
                    stack.push(Frame::Str { state: next, chars: chars + u32::from(counts), min, max });
                    return push(stack, out);
                }
                Frame::Num { state, integer, len } => {
                    if len < MAX_NUMBER_BYTES
                        && let Some(next) = state.next(b, integer)
                    {
                        stack.push(Frame::Num { state: next, integer, len: len + 1 });
                        return push(stack, out);
                    }
                    if !state.accepting() {
                        return;
                    }
                    // The number ended; the byte belongs to what follows it.
                }
                Frame::List { node, phase, count, ws } => {
                    let Node::List { open, close, item, min, max } = *self.grammar.node(node) else { return };
                    let frame = |phase, count, ws| Frame::List { node, phase, count, ws };
                    match phase {
                        Phase::Open if b == open => {
                            stack.push(frame(Phase::AfterOpen, 0, 0));
                            return push(stack, out);
                        }
                        Phase::Open => return,
                        _ if let Some(next) = ws_next(ws, b) => {
                            stack.push(frame(phase, count, next));
                            return push(stack, out);
                        }
                        Phase::AfterOpen if b == close && min == 0 => return push(stack, out),
                        Phase::AfterItem if b == close && count >= min => return push(stack, out),
                        Phase::AfterItem if b == b',' && max.is_none_or(|m| count < m) => {
                            stack.push(frame(Phase::AfterSep, count, 0));
                            return push(stack, out);
                        }
                        Phase::AfterItem => return,
                        Phase::AfterOpen | Phase::AfterSep => {
                            if max.is_some_and(|m| count >= m) {
                                return;
                            }
                            stack.push(frame(Phase::AfterItem, count + 1, 0));
                            stack.push(Frame::Start(item));
                        }
                    }
                }
            }
        }
    }
}

/// A UTF-8 continuation byte: part of a character already counted.
fn is_continuation(b: u8) -> bool {
    b & 0xC0 == 0x80
}
