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
