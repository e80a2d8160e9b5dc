//! House rules checked by a test, not by review (as rust-analyzer's `tidy`): every Rust file starts
//! with a `//!` doc, the library prints nothing (the binaries and xtask do), no file holds more than
//! 500 lines of code outside its `#[cfg(test)]` module (the pickle VM's opcode `match` may stay
//! long, with a ceiling), and ARCHITECTURE.md names every top-level module.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn all_rust_files() -> Vec<PathBuf> {
    let mut files = vec![repo().join("build.rs")];
    for dir in [
        "src",
        "tests",
        "benches",
        "examples",
        "xtask/src",
        "cpu-loops/src",
    ] {
        rust_files(&repo().join(dir), &mut files);
    }
    files.sort();
    files
}

/// Lines before the file's `#[cfg(test)]` module that are neither blank nor comments.
fn lines_of_code(text: &str) -> usize {
    text.lines()
        .take_while(|l| l.trim() != "#[cfg(test)]")
        .filter(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with("//")
        })
        .count()
}

/// Files allowed past 500 lines of code, with the most they may hold: the pickle VM's one opcode
/// `match` (510 lines of code on 2026-12-05).
const LONG_FILES: [(&str, usize); 1] = [("src/pickle/machine.rs", 520)];

#[test]
fn every_rust_file_is_documented_and_within_size_and_the_library_prints_nothing() {
    let mut problems = Vec::new();
    for path in all_rust_files() {
        let name = path
            .strip_prefix(repo())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.starts_with("//!") {
            problems.push(format!("{name}: does not start with a `//!` doc"));
        }
        let limit = LONG_FILES
            .iter()
            .find(|(f, _)| *f == name)
            .map_or(500, |(_, n)| *n);
        let loc = lines_of_code(&text);
        if loc > limit {
            problems.push(format!(
                "{name}: {loc} lines of code outside tests (at most {limit}): split it"
            ));
        }
        let library = name.starts_with("src/") && name != "src/main.rs";
        if library && (text.contains("println!(") || text.contains("eprintln!(")) {
            problems.push(format!(
                "{name}: prints; the library logs with `tracing` or returns what the caller prints"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn architecture_md_names_every_top_level_module() {
    let doc = std::fs::read_to_string(repo().join("ARCHITECTURE.md")).unwrap();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(repo().join("src")).unwrap() {
        let path = entry.unwrap().path();
        let module = match (path.is_dir(), path.file_stem()) {
            (true, Some(stem)) => stem.to_string_lossy().into_owned(),
            (false, Some(stem)) if path.extension().is_some_and(|e| e == "rs") => {
                stem.to_string_lossy().into_owned()
            }
            _ => continue,
        };
        if ["lib", "main"].contains(&module.as_str()) {
            continue;
        }
        if !doc.contains(&format!("`{module}")) {
            missing.push(module);
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md does not name these modules of src/: {missing:?}"
    );
}

/// The library's top-level modules that each one names as `crate::<module>` outside comments and its
/// `#[cfg(test)]` module (`use crate::{a, b}` groups included).
fn module_imports() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    let mut edges = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for path in files {
        let rel = path.strip_prefix(repo().join("src")).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "main" || module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code: String = text
            .lines()
            .take_while(|l| l.trim() != "#[cfg(test)]")
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let targets = edges.entry(module.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group[..group.find('}').unwrap_or(group.len())]
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap_or("").trim())
                    .collect(),
                None => vec![rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap()],
            };
            for name in names {
                let lower = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
                if lower && name != module && name != "self" {
                    targets.insert(name.to_string());
                }
            }
        }
    }
    edges
}

/// ARCHITECTURE.md's layering as a test: no top-level module of the library reaches itself through
/// the modules it imports (so no two import each other); evaluation never imports training.
#[test]
fn the_module_graph_has_no_cycle() {
    let edges = module_imports();
    assert!(
        edges.contains_key("model") && edges["model"].contains("layers"),
        "the scan sees imports: {edges:?}"
    );
    let mut cycles = Vec::new();
    for start in edges.keys() {
        // depth-first from `start`, looking for a path back to it
        let mut stack = vec![vec![start.clone()]];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(path) = stack.pop() {
            for next in edges.get(path.last().unwrap()).into_iter().flatten() {
                if next == start {
                    cycles.push(format!("{} -> {start}", path.join(" -> ")));
                } else if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push(longer);
                }
            }
        }
    }
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
    assert!(!edges["eval"].contains("train"), "eval imports train");
}
