//! The shape docs/DESIGN.md draws, checked on the sources: no crate's
//! modules use each other in a circle, and `api`'s modules keep their layers
//! (each uses only modules of the layers below its own).

#![allow(clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `api`'s layers, top first, as docs/DESIGN.md draws them.
const API_LAYERS: &[&[&str]] = &[
    &["main"],
    &["gateway"],
    &["serve"],
    &["node_server"],
    &["router"],
    &["anthropic"],
    &["openai", "status", "console", "graphql", "gitops", "kube_operator"],
    &["state"],
    &["inference"],
    &["scheduler_link", "kube_store"],
    &["cluster"],
    &["manage"],
    &["gate", "usage", "catalog", "domains", "metrics", "config", "telemetry", "engine_errors"],
    &["cli"],
    &["http", "build_info"],
];

/// Every crate of the workspace, by folder; `web` is the console's own workspace.
const CRATES: &[&str] =
    &["core", "protocol", "kernels", "node-runtime", "scheduler", "kube", "migrations", "store", "api", "web"];

type Graph = BTreeMap<String, BTreeSet<String>>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The production code of a file: unit tests (a `tests.rs`, the
/// `#[cfg(test)] mod tests` a file ends with, or a file that is
/// `#![cfg(test)]`, which [`module_graph`] leaves out) may use anything.
fn production_code(path: &Path) -> String {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    let text = std::fs::read_to_string(path).expect("a readable source file");
    match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

fn identifier(text: &str) -> &str {
    let end = text.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(text.len());
    &text[..end]
}

/// The top-level modules `code` names through `crate::`, including those
/// of a `use crate::{a, b::c}` group.
///
/// A text scan rather than `syn`: paths inside macro bodies (`view!`,
/// `json!`, `stream!`) count too, and `syn` leaves those as opaque tokens. A
/// path quoted in a comment can only add an edge, so the check errs strict.
fn crate_references(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_alphanumeric() || c == '_') => {
                        names.insert(identifier(&group[i..]).to_owned());
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            names.insert(identifier(rest).to_owned());
        }
    }
    names
}

/// The crate's top-level modules and which of them each one uses.
fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    // A file compiled only in tests (`#![cfg(test)]`) is unit tests: it may use anything.
    files.retain(|f| !std::fs::read_to_string(f).is_ok_and(|text| text.lines().any(|l| l == "#![cfg(test)]")));
    let module_of = |file: &Path| {
        let rel = file.strip_prefix(src).expect("under src");
        let first = rel.components().next().expect("a path").as_os_str().to_string_lossy().into_owned();
        first.strip_suffix(".rs").map(str::to_owned).unwrap_or(first)
    };
    let modules: BTreeSet<String> =
        files.iter().map(|f| module_of(f)).filter(|m| m != "lib" && m != "main" && m != "bin").collect();
    let mut graph: Graph = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for file in &files {
        let from = module_of(file);
        let Some(uses) = graph.get_mut(&from) else { continue };
        for to in crate_references(&production_code(file)) {
            if to != from && modules.contains(&to) {
                uses.insert(to);
            }
        }
    }
    graph
}

/// A circle through `start`, if there is one.
fn circle_through(graph: &Graph, start: &str) -> Option<Vec<String>> {
    fn walk(graph: &Graph, at: &str, start: &str, path: &mut Vec<String>, seen: &mut BTreeSet<String>) -> bool {
        for next in &graph[at] {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    walk(graph, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_crate_has_a_module_circle() {
    for krate in CRATES {
        let src = root().join(krate).join("src");
        let graph = module_graph(&src);
        assert!(graph.len() > 1 || *krate == "migrations" || *krate == "kernels", "{krate}: no modules found");
        for module in graph.keys() {
            if let Some(circle) = circle_through(&graph, module) {
                panic!("{krate}: modules use each other in a circle: {} → {module}", circle.join(" → "));
            }
        }
    }
}

#[test]
fn api_modules_use_only_the_layers_below_their_own() {
    let layer: BTreeMap<&str, usize> =
        API_LAYERS.iter().enumerate().flat_map(|(i, layer)| layer.iter().map(move |m| (*m, i))).collect();
    let graph = module_graph(&root().join("api/src"));
    let mut wrong = Vec::new();
    for (from, uses) in &graph {
        let Some(&own) = layer.get(from.as_str()) else {
            wrong.push(format!("`{from}` has no layer (add it to docs/DESIGN.md and API_LAYERS)"));
            continue;
        };
        for to in uses.iter().filter(|to| layer.get(to.as_str()).is_none_or(|&l| l <= own)) {
            wrong.push(format!("`{from}` uses `{to}`, which is not in a layer below its own"));
        }
    }
    assert!(wrong.is_empty(), "api's layers are broken:\n{}", wrong.join("\n"));
}

#[test]
fn references_are_read_through_groups() {
    let code = "use crate::{a::X, b, c::{d, e}};\nfn f() { crate::g::h(); }";
    let names: Vec<String> = crate_references(code).into_iter().collect();
    assert_eq!(names, ["a", "b", "c", "g"]);
}

#[test]
fn a_circle_is_found() {
    let graph: Graph = [("a", &["b"][..]), ("b", &["c"][..]), ("c", &["a"][..]), ("d", &["a"][..])]
        .into_iter()
        .map(|(m, uses)| (m.to_owned(), uses.iter().map(|u| (*u).to_owned()).collect()))
        .collect();
    assert_eq!(circle_through(&graph, "a"), Some(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]));
    assert_eq!(circle_through(&graph, "d"), None);
}
