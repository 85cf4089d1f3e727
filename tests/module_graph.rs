//! The module graph of `src/` and `loadgen/src/` has no cycles: no module imports (through
//! `crate::` or `super::` paths) a module that, directly or through others, imports it back.
//!
//! Cycles are how codec-neutral logic ended up inside codec files before; this keeps the layering
//! (leaf state types, codecs, forwarders, connection loops, worker loop) from eroding. Test-only
//! code (`#[cfg(test)]` modules) is not part of the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`proxy::forward`) of a source file under `root`.
fn module_of(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap_or(file).with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Edges module -> module it names through `crate::` (with `super::` resolved), outside tests.
fn graph(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let sources: BTreeMap<String, String> = files
        .iter()
        .map(|f| {
            (
                module_of(root, f),
                std::fs::read_to_string(f).unwrap_or_default(),
            )
        })
        .collect();
    let resolve = |path: &str| -> Option<String> {
        let mut parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
        while !parts.is_empty() {
            let candidate = parts.join("::");
            if sources.contains_key(&candidate) {
                return Some(candidate);
            }
            parts.pop();
        }
        None
    };
    let mut edges = BTreeMap::new();
    for (module, text) in &sources {
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
        let code = code.replace(
            "super::",
            &if parent.is_empty() {
                "crate::".to_string()
            } else {
                format!("crate::{parent}::")
            },
        );
        let mut targets = BTreeSet::new();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut names = vec![path.trim_end_matches(':').to_string()];
            // `crate::a::{b, c::D}`: each lowercase item may be a module of its own.
            if path.ends_with("::") && rest[path.len()..].starts_with('{') {
                let inner = &rest[path.len() + 1..];
                let inner = &inner[..inner.find('}').unwrap_or(inner.len())];
                for item in inner.split(',') {
                    let item = item.trim().split([' ', ':']).next().unwrap_or("");
                    if item.starts_with(|c: char| c.is_ascii_lowercase()) && item != "self" {
                        names.push(format!("{}{item}", path));
                    }
                }
            }
            for name in names {
                if let Some(target) = resolve(&name) {
                    // A module may use its own children and its ancestors' items freely.
                    if &target != module
                        && !module.starts_with(&format!("{target}::"))
                        && !target.is_empty()
                    {
                        targets.insert(target);
                    }
                }
            }
        }
        edges.insert(module.clone(), targets);
    }
    edges
}

/// One cycle, if the graph has any (depth-first search with an explicit path).
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(m) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = path.iter().position(|p| p == m).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(m.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(m.to_string(), Mark::Open);
        path.push(m.to_string());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, edges, marks, path) {
                return Some(c);
            }
        }
        path.pop();
        marks.insert(m.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for m in edges.keys() {
        if let Some(c) = visit(m, edges, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

fn assert_acyclic(dir: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let edges = graph(&root);
    assert!(
        edges.len() > 10,
        "{dir}: found only {} modules",
        edges.len()
    );
    if let Some(cycle) = find_cycle(&edges) {
        panic!("{dir}: import cycle {}", cycle.join(" -> "));
    }
}

#[test]
fn proxy_modules_have_no_import_cycles() {
    assert_acyclic("src");
}

#[test]
fn loadgen_modules_have_no_import_cycles() {
    assert_acyclic("loadgen/src");
}

#[test]
fn a_cycle_is_found() {
    // The checker itself: a two-module cycle and a clean chain.
    let mut edges = BTreeMap::new();
    edges.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    edges.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert!(find_cycle(&edges).is_some());
    edges.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    edges.insert("c".to_string(), BTreeSet::new());
    assert!(find_cycle(&edges).is_none());
}
