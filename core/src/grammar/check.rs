//! Whether a grammar can be used at all: some output must match it (a
//! schema like `{"$ref": "#"}` matches nothing, and sampling under it could
//! only produce junk), and no rule may reach itself before consuming a byte
//! (the matcher would spend its whole budget expanding such a loop).
//! Both are fixpoints over the rules, without recursion, so any grammar the
//! builder made is checked in time linear in its size times its depth.

use super::{Grammar, Node, NodeId, SchemaError};

fn refused(message: &str) -> SchemaError {
    SchemaError { path: "#".into(), message: message.into() }
}

/// # Errors
/// [`SchemaError`] when no output matches `grammar`, or a rule refers to
/// itself before any byte is written (a `$ref` cycle).
pub fn satisfiable(grammar: &Grammar) -> Result<(), SchemaError> {
    let productive = fixpoint(grammar, |node, known| match node {
        Node::Literal(_) | Node::Ws | Node::String { .. } | Node::Number { .. } => true,
        Node::Seq(items) => items.iter().all(|i| known[index(*i)]),
        Node::Alt(options) => options.iter().any(|i| known[index(*i)]),
        Node::List { item, min, .. } => *min == 0 || known[index(*item)],
    });
    if !productive[index(grammar.root())] {
        return Err(refused(
            "the schema matches no value (it only refers to itself, or its bounds exclude everything)",
        ));
    }
    if reaches_itself_without_input(grammar) {
        return Err(refused("the schema refers to itself before any value is written ($ref cycle)"));
    }
    Ok(())
}

fn index(id: NodeId) -> usize {
    id.0 as usize
}

/// The least set of rules for which `holds` is true, given the set so far.
fn fixpoint(grammar: &Grammar, holds: impl Fn(&Node, &[bool]) -> bool) -> Vec<bool> {
    let mut known = vec![false; grammar.nodes.len()];
    loop {
        let mut changed = false;
        for (i, node) in grammar.nodes.iter().enumerate() {
            if !known[i] && holds(node, &known) {
                known[i] = true;
                changed = true;
            }
        }
        if !changed {
            return known;
        }
    }
}

/// Whether some rule can expand to itself at the same position: the rules
/// each may start with, where a sequence may start with any item after a
/// run of items that can be empty.
fn reaches_itself_without_input(grammar: &Grammar) -> bool {
    let nullable = fixpoint(grammar, |node, known| match node {
        Node::Literal(bytes) => bytes.is_empty(),
        Node::Ws => true,
        Node::Seq(items) => items.iter().all(|i| known[index(*i)]),
        Node::Alt(options) => options.iter().any(|i| known[index(*i)]),
        Node::String { .. } | Node::Number { .. } | Node::List { .. } => false,
    });
    let starts = |node: &Node| -> Vec<usize> {
        match node {
            Node::Seq(items) => {
                let mut out = Vec::new();
                for item in items {
                    out.push(index(*item));
                    if !nullable[index(*item)] {
                        break;
                    }
                }
                out
            }
            Node::Alt(options) => options.iter().map(|i| index(*i)).collect(),
            _ => Vec::new(),
        }
    };
    // Depth-first search for a cycle, with an explicit stack.
    const NEW: u8 = 0;
    const OPEN: u8 = 1;
    const DONE: u8 = 2;
    let mut colour = vec![NEW; grammar.nodes.len()];
    for start in 0..grammar.nodes.len() {
        if colour[start] != NEW {
            continue;
        }
        let mut stack = vec![(start, starts(&grammar.nodes[start]), 0usize)];
        colour[start] = OPEN;
        while let Some((node, next, at)) = stack.last_mut() {
            if let Some(&child) = next.get(*at) {
                *at += 1;
                match colour[child] {
                    OPEN => return true,
                    NEW => {
                        colour[child] = OPEN;
                        let children = starts(&grammar.nodes[child]);
                        stack.push((child, children, 0));
                    }
                    _ => {}
                }
            } else {
                colour[*node] = DONE;
                stack.pop();
            }
        }
    }
    false
}
