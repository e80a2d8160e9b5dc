//! Records the commit checked out when the library is built (`FEWSHOT_BUILD_COMMIT`; `unknown` outside
//! a git checkout), so a binary copied aside for a long run says which code trained a cell even after
//! the checkout moves on. Uncommitted changes are not tracked (that would rebuild on every `git add`):
//! build long runs from a clean tree, as `reproduce --binary` checks.
//!
//! With the `cuda` feature it also compiles the fast path's kernels (`src/kernels/cuda/fast_path_kernels.cu`)
//! to PTX with nvcc (`$NVCC`, else `$CUDA_ROOT/bin/nvcc`, else `nvcc` on the path — the one candle's
//! kernels are built with) for `CUDA_COMPUTE_CAP` (default 90, the H200), into `$OUT_DIR`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// nvcc → `$OUT_DIR/fast_path_kernels.ptx` (the `cuda` feature only).
fn fast_path_ptx() {
    let source = "src/kernels/cuda/fast_path_kernels.cu";
    println!("cargo:rerun-if-changed={source}");
    for var in ["NVCC", "CUDA_ROOT", "CUDA_COMPUTE_CAP"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let nvcc = std::env::var("NVCC")
        .ok()
        .unwrap_or_else(|| match std::env::var("CUDA_ROOT") {
            Ok(root) => format!("{root}/bin/nvcc"),
            Err(_) => "nvcc".into(),
        });
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let out = std::path::Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("fast_path_kernels.ptx");
    let status = Command::new(&nvcc)
        .args(["--ptx", &format!("-arch=sm_{cap}"), "-o"])
        .arg(&out)
        .arg(source)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{nvcc} failed on {source} ({s}): the `cuda` feature needs the CUDA toolkit's nvcc (see the README's CUDA section)"),
        Err(e) => panic!("running {nvcc} for {source}: {e}: the `cuda` feature needs the CUDA toolkit's nvcc on the path or in $CUDA_ROOT/bin (see the README's CUDA section)"),
    }
}

fn main() {
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        fast_path_ptx();
    }
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=FEWSHOT_BUILD_COMMIT={commit}");
    // only files that exist: cargo treats a missing `rerun-if-changed` file as always stale, so a
    // clone without `packed-refs` (or a packed branch ref) rebuilt the library on every build
    let head = git(&["symbolic-ref", "-q", "HEAD"]);
    for name in ["HEAD", "packed-refs"].into_iter().chain(head.as_deref()) {
        if let Some(path) = git(&["rev-parse", "--git-path", name]) {
            let path = std::path::Path::new(&path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            } else if let Some(folder) = path.parent().filter(|_| Some(name) == head.as_deref()) {
                // a packed branch: its loose file appears at the next commit, in this folder
                if folder.is_dir() {
                    println!("cargo:rerun-if-changed={}", folder.display());
                }
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
