//! The module dependency graph, read from the source text: which top-level module uses
//! which (`crate::x`), and inside each directory module which sibling uses which
//! (`super::x`, `crate::dir::x`, and items the directory's `mod.rs` re-exports). The tests
//! fail on a cycle, naming it; `scripts/module-graph` prints the graph.
//!
//! A directory's `mod.rs` is the parent, not a sibling: what it declares for all its
//! children (`CurrentUser`, `AppState`) is below them by design, so edges to and from it
//! are not counted.

#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Source text without `//` comments (doc comments name modules in prose) and without
/// its unit tests (what a test module imports is not a dependency of the code).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => &text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names right after each `prefix` (`crate::`, `super::`): one identifier, or the
/// first identifier of each element of a `{…}` group (nested groups included).
fn names_after(text: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        rest = &rest[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut end = group.len();
            for (j, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = j;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let body = &group[..end];
            let mut depth = 0;
            let mut start = true;
            let mut word = String::new();
            for ch in body.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        if !word.is_empty() {
                            out.push(std::mem::take(&mut word));
                        }
                        start = true;
                        continue;
                    }
                    _ => {}
                }
                if start && depth == 0 {
                    if ch.is_alphanumeric() || ch == '_' {
                        word.push(ch);
                        continue;
                    } else if !word.is_empty() {
                        out.push(std::mem::take(&mut word));
                        start = false;
                    }
                }
            }
            if !word.is_empty() {
                out.push(word);
            }
        } else {
            let word: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !word.is_empty() {
                out.push(word);
            }
        }
    }
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn top_level_modules() -> Vec<String> {
    let lib = code(&src().join("lib.rs"));
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .filter_map(|l| l.strip_suffix(';'))
        .map(str::to_string)
        .collect()
}

/// Top-level modules: `a -> b` when a file of `a` names `crate::b`.
fn top_level_graph() -> Graph {
    let modules = top_level_modules();
    let mut g = Graph::new();
    for m in &modules {
        let dir = src().join(m);
        let files = if dir.is_dir() {
            rust_files(&dir)
        } else {
            vec![src().join(format!("{m}.rs"))]
        };
        let uses = g.entry(m.clone()).or_default();
        for f in files {
            for n in names_after(&code(&f), "crate::") {
                if n != *m && modules.contains(&n) {
                    uses.insert(n);
                }
            }
        }
    }
    g
}

/// Siblings inside directory module `dir` (e.g. `service`).
fn directory_graph(dir: &str) -> Graph {
    let base = src().join(dir);
    let siblings: BTreeSet<String> = std::fs::read_dir(&base)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let name = p.file_stem()?.to_str()?.to_string();
            (name != "mod" && (p.is_dir() || p.extension().is_some_and(|x| x == "rs")))
                .then_some(name)
        })
        .collect();
    // Items `mod.rs` re-exports (`pub use schema::{Effect, Schema}`) stand for their module.
    let mut reexports: BTreeMap<String, String> = BTreeMap::new();
    let parent = code(&base.join("mod.rs"));
    for line in parent.lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        if !siblings.contains(module) {
            continue;
        }
        for item in names_after(&format!("x::{items}"), "x::") {
            reexports.insert(item, module.to_string());
        }
    }
    let mut g = Graph::new();
    for name in &siblings {
        let path = base.join(format!("{name}.rs"));
        let files = if path.exists() {
            vec![path]
        } else {
            rust_files(&base.join(name))
        };
        let uses = g.entry(name.clone()).or_default();
        for f in files {
            let text = code(&f);
            let mut named = names_after(&text, "super::");
            named.extend(names_after(&text, &format!("crate::{dir}::")));
            for n in named {
                let target = reexports.get(&n).cloned().unwrap_or(n);
                if target != *name && siblings.contains(&target) {
                    uses.insert(target);
                }
            }
        }
    }
    g
}

/// A cycle of `g`, if there is one (as the path that closes it).
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        n: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut cycle = path[i..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(g, m, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(g, n, &mut Vec::new(), &mut done))
}

fn print(title: &str, g: &Graph) {
    println!("{title}");
    for (m, uses) in g {
        let list: Vec<&str> = uses.iter().map(String::as_str).collect();
        println!("  {m} -> {}", list.join(", "));
    }
}

/// Directory modules whose children are checked.
const DIRECTORIES: [&str; 6] = ["domain", "db", "notify", "service", "exec", "web"];

#[test]
fn no_module_cycles() {
    let top = top_level_graph();
    print("crate", &top);
    // The entry points (command line, demo and bench, fuzz targets) sit above everything.
    let mut layered = top.clone();
    for entry in ["cli", "demo", "bench", "fuzzing"] {
        layered.remove(entry);
    }
    let mut cycles = Vec::new();
    if let Some(c) = find_cycle(&layered) {
        cycles.push(format!("crate: {}", c.join(" -> ")));
    }
    for dir in DIRECTORIES {
        let g = directory_graph(dir);
        print(dir, &g);
        if let Some(c) = find_cycle(&g) {
            cycles.push(format!("{dir}/: {}", c.join(" -> ")));
        }
    }
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_graph_reader_sees_groups_and_cycles() {
    assert_eq!(
        names_after(
            "use super::{a::{b, c}, d, e::*};\nx(crate::f::g)",
            "super::"
        ),
        ["a", "d", "e"]
    );
    assert_eq!(names_after("crate::f::g", "crate::"), ["f"]);
    let g: Graph = [
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
    ]
    .into();
    assert_eq!(
        find_cycle(&g),
        Some(vec!["a".to_string(), "b".to_string(), "a".to_string()])
    );
    // The lower layers use nothing above them.
    let top = top_level_graph();
    assert!(top["domain"].is_empty(), "domain uses {:?}", top["domain"]);
    assert!(!top["db"].contains("service") && !top["db"].contains("notify"));
}
