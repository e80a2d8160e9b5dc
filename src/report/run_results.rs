//! What a report reads back from a cell's run folder `runs/<cell-hash>/`: the evaluation summary
//! (`eval.json`), the per-episode accuracies (`episodes.jsonl`), the training log (`train-log.jsonl`)
//! and the phase times `reproduce` records (`phases.json`). Plain serde mirrors of what the `fewshot`
//! binary writes, so reports need no deep-learning code.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::eval::gate::{read_episode_accuracies, EpisodeAccuracy};
use crate::manifest::experiment::PlannedCell;

/// `eval.json`, as the report reads it.
pub use crate::eval::summary::EvalSummary as EvalRecord;

/// One episodic epoch of `train-log.jsonl` (lines with a `stage`, the pre-training node's epochs
/// and the starting point's validation, are not epochs of the cell and are skipped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub lr: f64,
    pub mean_loss: f64,
    pub val_accuracy: f64,
    pub seconds: f64,
    /// The commit the binary that trained this epoch was built from (absent in older logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// Wall time of each phase of a cell, in seconds, as `reproduce` measured it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseTimes {
    pub train_seconds: Option<f64>,
    pub eval_seconds: Option<f64>,
    pub device: String,
    /// The largest resident memory (bytes) of the processes that ran the cell's phases (Linux's
    /// `VmHWM`; absent where the system does not say, and in folders written before it was recorded):
    /// the Slurm executor's memory request is sized from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
}

/// How far a cell got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum CellStatus {
    Done,
    Failed { log: PathBuf },
    NotRun,
}

/// A planned cell with whatever its run folder holds.
#[derive(Debug, Clone)]
pub struct CellResult {
    pub planned: PlannedCell,
    pub hash: String,
    pub status: CellStatus,
    pub eval: Option<EvalRecord>,
    pub episodes: Option<Vec<EpisodeAccuracy>>,
    pub epochs: Vec<EpochRecord>,
    pub phases: Option<PhaseTimes>,
    /// Every commit a binary that trained this cell was built from, in order: its pre-training
    /// node's epochs first, then its own (a run resumed under another build lists both).
    pub train_commits: Vec<String>,
}

pub fn read_eval(run_dir: &Path) -> Result<Option<EvalRecord>> {
    let path = run_dir.join(crate::run_files::EVAL);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
}

pub fn read_train_log(run_dir: &Path) -> Result<Vec<EpochRecord>> {
    let path = run_dir.join(crate::run_files::TRAIN_LOG);
    let bad = |e: serde_json::Error| Error::invalid(format!("{}: {e}", path.display()));
    let mut epochs = Vec::new();
    for value in crate::train_log::lines(&path)? {
        if value.get("stage").is_none() {
            epochs.push(serde_json::from_value(value).map_err(bad)?);
        }
    }
    Ok(epochs)
}

/// The distinct `commit`s of a `train-log.jsonl`, in order of first appearance (every stage).
pub fn read_train_commits(run_dir: &Path) -> Result<Vec<String>> {
    let mut commits: Vec<String> = Vec::new();
    for value in crate::train_log::lines(&run_dir.join(crate::run_files::TRAIN_LOG))? {
        if let Some(c) = value.get("commit").and_then(|c| c.as_str()) {
            if !commits.iter().any(|k| k == c) {
                commits.push(c.to_string());
            }
        }
    }
    Ok(commits)
}

impl CellResult {
    /// Reads the run folder of `planned` under `runs`; `failed_log` marks a cell that failed this time.
    pub fn load(runs: &Path, planned: &PlannedCell, failed_log: Option<&Path>) -> Result<Self> {
        let hash = planned.cell.hash();
        let dir = runs.join(&hash);
        let eval = read_eval(&dir)?;
        let episodes = if eval.is_some() && dir.join(crate::run_files::EPISODES).is_file() {
            Some(read_episode_accuracies(
                &dir.join(crate::run_files::EPISODES),
            )?)
        } else {
            None
        };
        let phases = std::fs::read_to_string(dir.join(crate::run_files::PHASES))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let status = match (failed_log, &eval) {
            (Some(log), _) => CellStatus::Failed {
                log: log.to_path_buf(),
            },
            (None, Some(_)) => CellStatus::Done,
            (None, None) => CellStatus::NotRun,
        };
        let mut train_commits = match planned.cell.pretrain_node() {
            Some(node) => read_train_commits(&runs.join(node.hash()))?,
            None => Vec::new(),
        };
        for c in read_train_commits(&dir)? {
            if !train_commits.contains(&c) {
                train_commits.push(c);
            }
        }
        Ok(Self {
            planned: planned.clone(),
            epochs: read_train_log(&dir)?,
            train_commits,
            hash,
            status,
            eval,
            episodes,
            phases,
        })
    }
}
