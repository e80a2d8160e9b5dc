//! A run folder's lock: `flock` on `dir/.lock`, held by the process that trains or evaluates in the
//! folder (`fewshot cell`, `fewshot train`, a cell training its shared pre-training node), and taken
//! without waiting by whoever must act on a folder no one works in (`runs gc`, `reproduce` moving a
//! stale result aside, an evaluation settling what a kill left). The kernel releases it when its
//! holder exits or is killed. A leaf module (below evaluation, `run_folders` and the reports).

use std::path::Path;

use crate::error::{Error, Result};

/// Takes the run folder's lock (`flock` on `dir/.lock`), waiting while another process holds it, so
/// that two submissions of one plan never train the same cell at once; the kernel releases it when the
/// holder exits or is killed. Returns the held lock and whether it had to wait.
pub fn lock(dir: &Path) -> Result<(std::fs::File, bool)> {
    match try_lock(dir)? {
        Some(file) => Ok((file, false)),
        None => {
            let path = dir.join(crate::run_files::LOCK);
            let file = open_lock(&path)?;
            file.lock().map_err(|e| Error::io(&path, e))?;
            Ok((file, true))
        }
    }
}

/// Takes the run folder's lock if no other process holds it (`None` when one does: it trains or
/// evaluates there). `runs gc`, `reproduce`'s move of a stale result and an evaluation that must
/// settle what a kill left keep the returned lock for as long as they act on the folder.
pub fn try_lock(dir: &Path) -> Result<Option<std::fs::File>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(crate::run_files::LOCK);
    let file = open_lock(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

fn open_lock(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))
}
