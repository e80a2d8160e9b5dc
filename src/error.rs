//! The library's one error type: every variant names the file involved and, where there is one, the
//! command that fixes it. Messages are lowercase and read as a sentence after "error: ".

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{path}: the disk is full ({needed} more bytes were needed); free space or move the data with --data-dir / FEWSHOT_DATA"
    )]
    DiskFull { path: PathBuf, needed: u64 },

    #[error("{path}: permission denied; make the folder writable or choose another with --data-dir / FEWSHOT_DATA")]
    PermissionDenied { path: PathBuf },

    #[error("{path}: invalid manifest: {message}")]
    Manifest { path: PathBuf, message: String },

    #[error("{file}: checksum mismatch from {from}: expected {algorithm} {expected}, got {actual}; the partial file was removed, run `cargo xtask fetch-data` again or try another mirror")]
    Checksum {
        file: String,
        from: String,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },

    #[error("{file}: size mismatch from {from}: expected {expected} bytes, got {actual}; the partial file was removed")]
    Size {
        file: String,
        from: String,
        expected: u64,
        actual: u64,
    },

    #[error("{url}: the server sent an HTML page instead of the archive (a login, quota or virus-scan page?): {hint}")]
    HtmlInsteadOfArchive { url: String, hint: String },

    #[error("{url}: {message}")]
    Download { url: String, message: String },

    #[error("{dataset}: no source could be fetched:\n{attempts}\nfix the network or pass a mirror with --mirror DIR_OR_URL (or FEWSHOT_MIRROR)")]
    NoSourceWorked { dataset: String, attempts: String },

    #[error("{path}: corrupt or unreadable image: {message}")]
    Image { path: String, message: String },

    #[error("{path}: bad archive content: {message}")]
    Archive { path: PathBuf, message: String },

    #[error("{path}: not a valid pickle: {message}")]
    Pickle { path: PathBuf, message: String },

    #[error(
        "{path}: {message}; run `cargo xtask fetch-data --dataset {dataset}` to (re)prepare it"
    )]
    Store {
        path: PathBuf,
        dataset: String,
        message: String,
    },

    #[error("{path}: {message}")]
    Episodes { path: PathBuf, message: String },

    #[error("{message}")]
    Invalid { message: String },
}

impl Error {
    /// Wraps an I/O error for `path`, turning "disk full" and "permission denied" into the variants
    /// that say what to do.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        match source.kind() {
            std::io::ErrorKind::PermissionDenied => Error::PermissionDenied { path },
            std::io::ErrorKind::StorageFull => Error::DiskFull { path, needed: 0 },
            _ => Error::Io { path, source },
        }
    }

    /// Like [`Error::io`], but says how many bytes the write needed when the disk is full.
    pub fn io_writing(path: impl Into<PathBuf>, source: std::io::Error, needed: u64) -> Self {
        match Error::io(path, source) {
            Error::DiskFull { path, .. } => Error::DiskFull { path, needed },
            other => other,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid {
            message: message.into(),
        }
    }
}
