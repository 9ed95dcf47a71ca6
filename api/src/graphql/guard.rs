//! What every GraphQL operation passes before it runs, over HTTP and on a
//! websocket alike: the document's nesting is bounded before the parser sees
//! it (the parser recurses once per level, so a few kilobytes of brackets
//! would otherwise overflow a worker's stack and kill the process), and each
//! mutation field is counted against the key's rate limit, so aliases cannot
//! multiply one request into hundreds of writes.

use std::collections::HashMap;
use std::time::Duration;

use async_graphql::Variables;
use async_graphql::parser::Positioned;
use async_graphql::parser::types::{
    Directive, DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};
use async_graphql_value::{ConstValue, Value};

/// Deepest bracket nesting (`{`, `[`, `(`) a document may have. The
/// deepest useful query ([`super::MAX_DEPTH`] selection sets, each with an
/// argument holding an input object or two) is well inside it; the parser
/// uses a few hundred bytes of stack per level, so this keeps a parse under
/// a tenth of a worker's 2 MiB stack.
pub const MAX_NESTING: usize = 64;

/// Most mutation fields one request may run. Each is a transaction and an
/// audit event; a plan/apply changes many objects through one field, so a
/// person or a CI job never needs more at once.
pub const MAX_MUTATION_FIELDS: usize = 20;

/// Why an operation was refused before it ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the document nests brackets more than {MAX_NESTING} levels deep; it was not parsed")]
    TooDeep,
    #[error(
        "one request may run at most {MAX_MUTATION_FIELDS} mutation fields (aliases and every fragment spread count); this one has {0}"
    )]
    TooManyMutations(u64),
    #[error(
        "the document expands (fragments spread into each other) past {MAX_EXPANDED_SELECTIONS} selections, or its fragments spread each other in a cycle"
    )]
    TooLarge,
    #[error("too many requests for this key; retry in {} s", .0.as_secs().max(1))]
    RateLimited(Duration),
    #[error("a string in this request holds a NUL character (\\u0000), which no field accepts")]
    Nul,
}

/// Whether `document` nests brackets at most [`MAX_NESTING`] deep, counting
/// only brackets outside strings, block strings and comments. Linear in the
/// document's length and without recursion, so it is safe on any input.
pub fn nesting_within_limit(document: &str) -> bool {
    let bytes = document.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    // `\"""` is an escaped triple quote inside a block string.
                    i += if bytes[i..].starts_with(b"\\\"\"\"") { 4 } else { 1 };
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return false;
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    true
}

/// Most selections a document may hold once every fragment spread is
/// expanded. A few lines of fragments that each spread the next twice
/// expand to 2³⁰ selections, which validation would walk one by one on a
/// worker thread; real documents, the console's included, hold a few hundred.
pub const MAX_EXPANDED_SELECTIONS: u64 = 10_000;

/// How many mutation fields the chosen operation of `doc` runs: its root
/// fields once fragments are expanded, every spread counted (a fragment
/// spread twice runs its fields twice) and aliases each counted. Zero for
/// queries and subscriptions, and for an operation that does not exist
/// (validation reports that).
///
/// # Errors
/// [`Refusal::TooLarge`] when the document expands past
/// [`MAX_EXPANDED_SELECTIONS`], or its fragments spread each other in a cycle.
pub fn mutation_fields(doc: &ExecutableDocument, operation: Option<&str>) -> Result<u64, Refusal> {
    let mut expansion = Expansion { doc, sizes: HashMap::new() };
    let mut total = 0u64;
    let mut mutation_fields = 0;
    let chosen = match (&doc.operations, operation) {
        (DocumentOperations::Single(_), _) => None,
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.keys().next().map(|n| n.as_str()),
        (_, name) => name,
    };
    for (name, op) in doc.operations.iter() {
        let size = expansion.set(&op.node.selection_set.node)?;
        total = total.saturating_add(size.selections);
        let is_chosen = match (name, chosen) {
            (None, _) => true,
            (Some(n), Some(c)) => n.as_str() == c,
            (Some(_), None) => false,
        };
        if is_chosen && op.node.ty == OperationType::Mutation {
            mutation_fields = size.top_fields;
        }
    }
    for fragment in doc.fragments.values() {
        total = total.saturating_add(expansion.set(&fragment.node.selection_set.node)?.selections);
    }
    if total > MAX_EXPANDED_SELECTIONS {
        return Err(Refusal::TooLarge);
    }
    Ok(mutation_fields)
}

/// A selection set's size with its fragments expanded.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    /// Fields at its own level (what a mutation's root runs).
    top_fields: u64,
    /// Every selection at every level.
    selections: u64,
}

/// Expands fragment spreads by arithmetic: each fragment's size is computed
/// once and multiplied by its spreads, so any document is measured in time
/// linear in its length.
struct Expansion<'d> {
    doc: &'d ExecutableDocument,
    /// `None` while the fragment is being measured: met again, it is a cycle.
    sizes: HashMap<&'d str, Option<Size>>,
}

impl<'d> Expansion<'d> {
    fn set(&mut self, set: &'d SelectionSet) -> Result<Size, Refusal> {
        let mut out = Size::default();
        for item in &set.items {
            let size = match &item.node {
                Selection::Field(f) => {
                    let inner = self.set(&f.node.selection_set.node)?;
                    Size { top_fields: 1, selections: inner.selections.saturating_add(1) }
                }
                Selection::InlineFragment(f) => self.set(&f.node.selection_set.node)?,
                Selection::FragmentSpread(spread) => self.fragment(spread.node.fragment_name.node.as_str())?,
            };
            out.top_fields = out.top_fields.saturating_add(size.top_fields);
            out.selections = out.selections.saturating_add(size.selections);
            if out.selections > MAX_EXPANDED_SELECTIONS {
                return Err(Refusal::TooLarge);
            }
        }
        Ok(out)
    }

    fn fragment(&mut self, name: &'d str) -> Result<Size, Refusal> {
        match self.sizes.get(name) {
            Some(Some(size)) => return Ok(*size),
            Some(None) => return Err(Refusal::TooLarge),
            None => {}
        }
        // An unknown fragment is refused by validation; it adds nothing here.
        let Some((key, fragment)) = self.doc.fragments.iter().find(|(n, _)| n.as_str() == name) else {
            return Ok(Size::default());
        };
        self.sizes.insert(key.as_str(), None);
        let size = self.set(&fragment.node.selection_set.node)?;
        self.sizes.insert(key.as_str(), Some(size));
        Ok(size)
    }
}

/// Whether any string the request gives (in its variables, or written in
/// the document: arguments, directives, variable defaults) holds a NUL
/// character. No field takes one, and PostgreSQL cannot store one, so it is
/// refused up front alike on every database.
pub fn holds_nul(doc: &ExecutableDocument, variables: &Variables) -> bool {
    fn value(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::List(items) => items.iter().any(value),
            Value::Object(fields) => fields.values().any(value),
            _ => false,
        }
    }
    fn constant(v: &ConstValue) -> bool {
        match v {
            ConstValue::String(s) => s.contains('\0'),
            ConstValue::List(items) => items.iter().any(constant),
            ConstValue::Object(fields) => fields.values().any(constant),
            _ => false,
        }
    }
    fn directives(ds: &[Positioned<Directive>]) -> bool {
        ds.iter().any(|d| d.node.arguments.iter().any(|(_, v)| value(&v.node)))
    }
    fn set(s: &SelectionSet) -> bool {
        s.items.iter().any(|item| match &item.node {
            Selection::Field(f) => {
                f.node.arguments.iter().any(|(_, v)| value(&v.node))
                    || directives(&f.node.directives)
                    || set(&f.node.selection_set.node)
            }
            Selection::InlineFragment(f) => directives(&f.node.directives) || set(&f.node.selection_set.node),
            Selection::FragmentSpread(f) => directives(&f.node.directives),
        })
    }
    variables.values().any(constant)
        || doc.operations.iter().any(|(_, op)| {
            op.node
                .variable_definitions
                .iter()
                .any(|v| v.node.default_value.as_ref().is_some_and(|d| constant(&d.node)))
                || directives(&op.node.directives)
                || set(&op.node.selection_set.node)
        })
        || doc.fragments.values().any(|f| directives(&f.node.directives) || set(&f.node.selection_set.node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::parser::parse_query;

    fn nested(open: &str, close: &str, levels: usize) -> String {
        format!("{{model(name:{}\"x\"{}){{name}}}}", open.repeat(levels), close.repeat(levels))
    }

    #[test]
    fn deep_lists_objects_and_selections_are_refused_before_parsing() {
        assert!(!nesting_within_limit(&nested("[", "]", 2000)));
        assert!(!nesting_within_limit(&format!("{{a(x:{}1{})}}", "{a:".repeat(2000), "}".repeat(2000))));
        assert!(!nesting_within_limit(&format!("query($v:String={}1{}){{a}}", "[".repeat(2000), "]".repeat(2000))));
        assert!(!nesting_within_limit(&format!("{}{}", "{a".repeat(2000), "}".repeat(2000))));
        assert!(nesting_within_limit(&nested("[", "]", 10)));
    }

    #[test]
    fn brackets_inside_strings_and_comments_do_not_count() {
        let deep = "[".repeat(500);
        assert!(nesting_within_limit(&format!("{{model(name:\"{deep}\"){{name}}}}")));
        assert!(nesting_within_limit(&format!("{{model(name:\"\"\"{deep} \\\"\"\" {deep}\"\"\"){{name}}}}")));
        assert!(nesting_within_limit(&format!("# {deep}\n{{models{{nodes{{name}}}}}}")));
        assert!(nesting_within_limit(&format!("{{model(name:\"a\\\"{deep}\"){{name}}}}")));
    }

    #[test]
    fn aliased_and_fragment_mutation_fields_are_each_counted() {
        let doc = parse_query("mutation { a: deleteProject(input:{name:\"x\"}) { ok } b: deleteProject(input:{name:\"y\"}) { ok } ... F ... F ... on MutationRoot { c: x } } fragment F on MutationRoot { d: x e: x }").unwrap();
        assert_eq!(mutation_fields(&doc, None), Ok(7), "a, b, c, and d and e for each of the two spreads");
        let doc = parse_query("query { a b c }").unwrap();
        assert_eq!(mutation_fields(&doc, None), Ok(0));
        let doc = parse_query("query Q { a } mutation M { a b }").unwrap();
        assert_eq!(mutation_fields(&doc, Some("M")), Ok(2));
        assert_eq!(mutation_fields(&doc, Some("Q")), Ok(0));
        assert_eq!(mutation_fields(&doc, None), Ok(0), "ambiguous: validation refuses it");
    }

    #[test]
    fn spreading_one_fragment_many_times_counts_every_spread() {
        let spreads = "...F ".repeat(200);
        let fields: String = (0..20).map(|i| format!("f{i}: x ")).collect();
        let doc = parse_query(format!("mutation {{ {spreads} }} fragment F on M {{ {fields} }}")).unwrap();
        assert_eq!(mutation_fields(&doc, None), Ok(4_000));
    }

    #[test]
    fn exponential_and_cyclic_fragments_are_refused() {
        let mut doc = String::from("query { ...F0 } ");
        for i in 0..30 {
            doc.push_str(&format!("fragment F{i} on Q {{ ...F{} ...F{} }} ", i + 1, i + 1));
        }
        doc.push_str("fragment F30 on Q { __typename }");
        let doc = parse_query(&doc).unwrap();
        assert_eq!(mutation_fields(&doc, None), Err(Refusal::TooLarge));
        let doc = parse_query("query { ...F } fragment F on Q { ...G } fragment G on Q { ...F }").unwrap();
        assert_eq!(mutation_fields(&doc, None), Err(Refusal::TooLarge));
        let doc = parse_query("{ projects { nodes { name services { nodes { name } } } } }").unwrap();
        assert_eq!(mutation_fields(&doc, None), Ok(0));
    }

    #[test]
    fn a_nul_anywhere_in_the_request_is_found() {
        let vars = |v: serde_json::Value| Variables::from_json(v);
        let doc = parse_query("mutation($i: In) { a(input: $i) { ok } }").unwrap();
        assert!(holds_nul(&doc, &vars(serde_json::json!({"i": {"name": "x\0y"}}))));
        assert!(holds_nul(&doc, &vars(serde_json::json!({"i": {"names": ["ok", "\0"]}}))));
        assert!(!holds_nul(&doc, &vars(serde_json::json!({"i": {"name": "fine"}}))));
        for written in [
            "{ a(name: \"x\\u0000\") }",
            "{ a(input: {list: [\"\\u0000\"]}) }",
            "query($v: String = \"\\u0000\") { a(name: $v) }",
            "{ a @include(if: \"\\u0000\") }",
            "{ ...F } fragment F on Q { a(name: \"\\u0000\") }",
        ] {
            let doc = parse_query(written).unwrap();
            assert!(holds_nul(&doc, &Variables::default()), "{written}");
        }
        let doc = parse_query("{ a(name: \"x\\\\u0000\") }").unwrap();
        assert!(!holds_nul(&doc, &Variables::default()), "an escaped backslash then u0000 is text");
    }

    proptest::proptest! {
        #[test]
        fn any_document_within_the_limit_parses_without_overflowing(levels in 0usize..=MAX_NESTING, kind in 0usize..3) {
            // One repetition opens `brackets` levels.
            let (open, close, brackets) = [("[", "]", 1), ("{a:", "}", 1), ("[{a:", "}]", 2)][kind];
            let reps = levels / brackets;
            let doc = format!("{{model(name:{}1{}){{name}}}}", open.repeat(reps), close.repeat(reps));
            if nesting_within_limit(&doc) {
                // Parsing on this test thread's stack (2 MiB, as a worker's) must not overflow.
                let _ = parse_query(&doc);
            }
        }
    }
}
