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
    for dir in ["src", "tests", "benches", "examples", "xtask/src"] {
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
