//! `fewshot runs list|gc`: the run folders under `runs/` — what each holds (cell, status, accuracy,
//! size) — and pruning the ones no current plan produces: cells (and their shared pre-training nodes)
//! of no profile of any experiment in `manifests/experiments/` and of no CI gate, and folders set aside
//! as stale by `reproduce`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::manifest::baseline::CiBaselines;
use crate::manifest::cell::CellConfig;
use crate::manifest::experiment::Experiment;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub folder: String,
    pub dataset: Option<String>,
    pub method: Option<String>,
    pub shot: Option<usize>,
    /// `evaluated`, `trained`, `training` (a last checkpoint, no best yet), or `empty`.
    pub status: String,
    pub accuracy: Option<f64>,
    pub bytes: u64,
}

fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        folder_bytes(&p)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Every folder under `runs`, sorted by name.
pub fn list(runs: &Path) -> Result<Vec<RunSummary>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(runs) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(runs, e)),
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.is_dir() {
            continue;
        }
        let cell = std::fs::read_to_string(dir.join("cell.toml"))
            .ok()
            .and_then(|t| CellConfig::from_toml(&t).ok());
        let eval = crate::report::run_results::read_eval(&dir).ok().flatten();
        let node = cell.as_ref().is_some_and(CellConfig::is_pretrain_node);
        let status = if node && pretrain_done(&dir) {
            "pre-trained"
        } else if eval.is_some() {
            "evaluated"
        } else if dir.join("checkpoint-best.safetensors").is_file() {
            "trained"
        } else if dir.join("checkpoint-last.safetensors").is_file() {
            "training"
        } else {
            "empty"
        };
        out.push(RunSummary {
            folder: entry.file_name().to_string_lossy().into_owned(),
            dataset: cell.as_ref().map(|c| c.dataset.clone()),
            method: cell.as_ref().map(|c| match node {
                true => "pre-training".to_string(),
                false => c.head.name().to_string(),
            }),
            shot: cell.as_ref().map(|c| c.episode.n_shot).filter(|_| !node),
            status: status.into(),
            accuracy: eval.map(|e| e.mean),
            bytes: folder_bytes(&dir),
        });
    }
    out.sort_by(|a, b| a.folder.cmp(&b.folder));
    Ok(out)
}

/// Whether the pre-training node in `dir` finished its epochs (its `state.json`, rewritten at the end of
/// every `train`, says so).
pub fn pretrain_done(dir: &Path) -> bool {
    let cell = std::fs::read_to_string(dir.join("cell.toml"))
        .ok()
        .and_then(|t| CellConfig::from_toml(&t).ok());
    let state: Option<serde_json::Value> = std::fs::read(dir.join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    match (cell.and_then(|c| c.train.pretrain), state) {
        (Some(p), Some(s)) => s["pretrain_epochs_done"].as_u64() == Some(p.epochs as u64),
        _ => false,
    }
}

/// Hashes of every cell some plan produces: each profile of each experiment, and each CI gate.
pub fn planned_hashes(manifests: &Path) -> Result<BTreeSet<String>> {
    let mut keep = BTreeSet::new();
    let dir = manifests.join("experiments");
    for entry in std::fs::read_dir(&dir)
        .map_err(|e| Error::io(&dir, e))?
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let name = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let experiment = Experiment::read(manifests, &name)?;
            for profile in experiment.profile.keys() {
                for c in experiment.plan(manifests, profile)? {
                    keep.insert(c.cell.hash());
                    // the shared pre-training node the cell starts from
                    if let Some(node) = c.cell.pretrain_node() {
                        keep.insert(node.hash());
                    }
                }
            }
        }
    }
    let baselines = manifests.join("baselines/ci.toml");
    if baselines.is_file() {
        for g in CiBaselines::read(&baselines)?.gate {
            let path = manifests.join(&g.cell);
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let cell = CellConfig::from_toml(&text)
                .map_err(|message| Error::Manifest { path, message })?;
            keep.insert(cell.hash());
        }
    }
    Ok(keep)
}

/// Removes the folders under `runs` whose name is not in `keep` (all of them with `dry_run` false);
/// returns them with their sizes.
pub fn gc(runs: &Path, keep: &BTreeSet<String>, dry_run: bool) -> Result<Vec<(PathBuf, u64)>> {
    let mut removed = Vec::new();
    for run in list(runs)? {
        if keep.contains(&run.folder) {
            continue;
        }
        let path = runs.join(&run.folder);
        if !dry_run {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
        removed.push((path, run.bytes));
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_keeps_planned_cells_and_removes_the_rest() {
        let manifests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests");
        let keep = planned_hashes(&manifests).unwrap();
        let smoke = Experiment::read(&manifests, "table1")
            .unwrap()
            .plan(&manifests, "smoke")
            .unwrap();
        let kept = smoke[0].cell.hash();
        assert!(keep.contains(&kept));
        let runs = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(runs.path().join(&kept)).unwrap();
        std::fs::create_dir_all(runs.path().join("0123456789abcdef")).unwrap();
        std::fs::write(runs.path().join("0123456789abcdef/eval.json"), b"{}").unwrap();
        std::fs::create_dir_all(runs.path().join(format!("{kept}.stale-1"))).unwrap();
        let listed = list(runs.path()).unwrap();
        assert_eq!(listed.len(), 3);
        let dry = gc(runs.path(), &keep, true).unwrap();
        assert_eq!(dry.len(), 2);
        assert_eq!(
            list(runs.path()).unwrap().len(),
            3,
            "a dry run removes nothing"
        );
        gc(runs.path(), &keep, false).unwrap();
        let left: Vec<String> = list(runs.path())
            .unwrap()
            .into_iter()
            .map(|r| r.folder)
            .collect();
        assert_eq!(left, vec![kept]);
    }
}
