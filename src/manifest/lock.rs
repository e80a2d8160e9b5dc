//! `manifests/locks/<dataset>.lock`: SHA-256s pinned on first download for archives that have no
//! published SHA-256 (trust on first use, after any published MD5 or hash prefix was checked). The file
//! is plain TOML that a user can commit and share, so that every later download is checked exactly.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic_write::write_atomically;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    #[serde(default, rename = "archive")]
    pub archives: Vec<LockedArchive>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LockedArchive {
    pub source: String,
    pub file: String,
    pub size: u64,
    pub sha256: String,
    /// Where the pinned bytes came from.
    pub pinned_from: String,
    /// UTC date and time of the pin, `YYYY-MM-DDTHH:MM:SSZ`.
    pub pinned_at: String,
}

impl LockFile {
    pub fn path(manifests: &Path, dataset: &str) -> PathBuf {
        manifests.join("locks").join(format!("{dataset}.lock"))
    }

    /// Reads the lock file; a missing file is an empty lock.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => super::parse_toml(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    pub fn find(&self, source: &str, file: &str) -> Option<&LockedArchive> {
        self.archives
            .iter()
            .find(|a| a.source == source && a.file == file)
    }

    /// Adds (or replaces) a pin and writes the file atomically.
    pub fn pin(&mut self, path: &Path, entry: LockedArchive) -> Result<()> {
        self.archives
            .retain(|a| !(a.source == entry.source && a.file == entry.file));
        self.archives.push(entry);
        self.archives
            .sort_by(|a, b| (&a.source, &a.file).cmp(&(&b.source, &b.file)));
        let body = toml::to_string_pretty(self).map_err(|e| Error::invalid(e.to_string()))?;
        let text = format!(
            "# SHA-256s pinned on first download by `cargo xtask fetch-data` (no SHA-256 is published for these\n\
             # files). Commit this file to make every later download of them verify exactly.\n\n{body}"
        );
        write_atomically(path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_round_trips_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks").join("x.lock");
        let mut lock = LockFile::load(&path).unwrap();
        assert!(lock.archives.is_empty());
        let entry = LockedArchive {
            source: "s".into(),
            file: "f.pkl".into(),
            size: 3,
            sha256: "ab".repeat(32),
            pinned_from: "http://x/f.pkl".into(),
            pinned_at: crate::clock::utc_now(),
        };
        lock.pin(&path, entry.clone()).unwrap();
        lock.pin(&path, entry.clone()).unwrap();
        let again = LockFile::load(&path).unwrap();
        assert_eq!(again.archives, vec![entry]);
    }
}
