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
}

pub fn read_eval(run_dir: &Path) -> Result<Option<EvalRecord>> {
    let path = run_dir.join("eval.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
}

pub fn read_train_log(run_dir: &Path) -> Result<Vec<EpochRecord>> {
    let path = run_dir.join("train-log.jsonl");
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let bad = |e: serde_json::Error| Error::invalid(format!("{}: {e}", path.display()));
    let mut epochs = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line).map_err(bad)?;
        if value.get("stage").is_none() {
            epochs.push(serde_json::from_value(value).map_err(bad)?);
        }
    }
    Ok(epochs)
}

impl CellResult {
    /// Reads the run folder of `planned` under `runs`; `failed_log` marks a cell that failed this time.
    pub fn load(runs: &Path, planned: &PlannedCell, failed_log: Option<&Path>) -> Result<Self> {
        let hash = planned.cell.hash();
        let dir = runs.join(&hash);
        let eval = read_eval(&dir)?;
        let episodes = if eval.is_some() && dir.join("episodes.jsonl").is_file() {
            Some(read_episode_accuracies(&dir.join("episodes.jsonl"))?)
        } else {
            None
        };
        let phases = std::fs::read_to_string(dir.join("phases.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let status = match (failed_log, &eval) {
            (Some(log), _) => CellStatus::Failed {
                log: log.to_path_buf(),
            },
            (None, Some(_)) => CellStatus::Done,
            (None, None) => CellStatus::NotRun,
        };
        Ok(Self {
            planned: planned.clone(),
            epochs: read_train_log(&dir)?,
            hash,
            status,
            eval,
            episodes,
            phases,
        })
    }
}
