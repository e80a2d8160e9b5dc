//! The git state every result records: the checked-out commit of the working tree a command runs in
//! and whether it has uncommitted changes (both None outside a git checkout or without git).

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The commit checked out when this library was built (`build.rs`).
pub const BUILD_COMMIT: &str = env!("FEWSHOT_BUILD_COMMIT");

/// `git rev-parse HEAD` in `dir`.
pub fn git_commit(dir: &Path) -> Option<String> {
    git(dir, &["rev-parse", "HEAD"])
}

/// Whether `git status --porcelain` in `dir` lists anything.
pub fn git_dirty(dir: &Path) -> Option<bool> {
    git(dir, &["status", "--porcelain"]).map(|s| !s.is_empty())
}

/// The commit with `-dirty` appended when the tree has changes, or `unknown`.
pub fn git_description(dir: &Path) -> String {
    match (git_commit(dir), git_dirty(dir)) {
        (Some(c), Some(true)) => format!("{c}-dirty"),
        (Some(c), _) => c,
        (None, _) => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_checkout_has_a_commit_and_a_plain_folder_has_none() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let commit = git_commit(repo).expect("the crate is built from a git checkout");
        assert_eq!(commit.len(), 40);
        assert!(git_description(repo).starts_with(&commit));
        let plain = tempfile::tempdir().unwrap();
        assert_eq!(git_commit(plain.path()), None);
        assert_eq!(git_description(plain.path()), "unknown");
    }
}
