//! Where the repository and its folders are, as xtask sees them.

use std::path::PathBuf;

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf()
}

pub fn manifests() -> PathBuf {
    root().join("manifests")
}

/// `--data-dir`, else `FEWSHOT_DATA`, else `<root>/datasets`.
pub fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("FEWSHOT_DATA").map(PathBuf::from))
        .unwrap_or_else(|| root().join("datasets"))
}

/// A `cargo` command for a nested build, without the variables `cargo run` set for xtask itself
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, …): build scripts such as ring's track `CARGO_MANIFEST_DIR`
/// (`rerun-if-env-changed`), so a nested build that inherited xtask's value rebuilt ring, rustls,
/// ureq and fewshot on every alternation with a plain `cargo build` or `cargo test`.
pub fn cargo() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO"));
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let set_for_xtask = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                name,
                "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
            );
        if set_for_xtask {
            cmd.env_remove(name);
        }
    }
    cmd
}
