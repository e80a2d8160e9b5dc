//! Atomic file writes: results and metadata are written to a temporary file beside the target,
//! flushed to disk and renamed over it, and the folder's entry is flushed too, so neither a killed
//! process nor a machine crash leaves a half-written or zero-filled file under the final name.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically, creating the parent folder if needed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    // a name of this process and call: two processes writing the same file (a run folder's
    // `cell.toml`, rewritten by `reproduce` while its cell runs) never share a temporary file
    let tmp = unique_temporary_path(path);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io_writing(path, e, bytes.len() as u64));
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    sync_folder(parent)
}

/// Flushes a folder's entries (a rename into it) to disk. Where a folder cannot be opened for that
/// (not Unix), or its file system does not flush folders (some FUSE and network file systems answer
/// `EINVAL`), the rename stands as the kernel left it.
pub fn sync_folder(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let folder = std::fs::File::open(dir).map_err(|e| Error::io(dir, e))?;
        match folder.sync_all() {
            Err(e)
                if e.kind() != std::io::ErrorKind::InvalidInput
                    && e.kind() != std::io::ErrorKind::Unsupported =>
            {
                return Err(Error::io(dir, e))
            }
            _ => {}
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    write_atomically(
        path,
        &serde_json::to_vec_pretty(value).expect("serialisable"),
    )
}

/// `dir/.name.<pid>-<n>.tmp`: a temporary name no other process or call uses at the same time.
fn unique_temporary_path(path: &Path) -> std::path::PathBuf {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}-{n}.tmp", std::process::id()))
}

/// `dir/.name.tmp`: the temporary name a file is written under before its rename, by a writer that
/// holds the folder's lock (a checkpoint, a store being prepared).
pub fn temporary_path(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}
