//! What a report reads back from a cell's run folder `runs/<cell-hash>/`: the evaluation summary
//! (`eval.json`), the per-episode accuracies and losses (`episodes.jsonl`), the training log (`train-log.jsonl`)
//! and the phase times (`phases.json`: the trainer adds each commit's training time, `fewshot cell` the
//! test evaluation's). Plain serde mirrors of what the `fewshot` binary writes, so reports need no
//! deep-learning code.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::eval::episode_file::{read_episode_accuracies, EpisodeAccuracy};
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

/// Wall time of each phase of a run folder, in seconds: its own training (from 134ae47 added at each
/// commit; before, one `fewshot cell` process's whole training call, a node it trained inline included)
/// and its last test evaluation.
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
    /// Its shared pre-training node's hash and phase times, where it names one.
    pub node: Option<(String, Option<PhaseTimes>)>,
    /// Every commit a binary that trained this cell was built from, in order: its pre-training
    /// node's epochs first, then its own (a run resumed under another build lists both).
    pub train_commits: Vec<String>,
    /// Every processor that trained it on the CPU, node first, in order of first appearance (absent
    /// from logs written before 2026-12-07).
    pub train_cpus: Vec<String>,
}

/// The phase times a run folder's `phases.json` records, if any.
pub fn read_phases(run_dir: &Path) -> Option<PhaseTimes> {
    std::fs::read_to_string(run_dir.join(crate::run_files::PHASES))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
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

/// The distinct string values of `key` in the `train-log.jsonl` of each folder (a cell's pre-training
/// node first, then the cell), in order of first appearance.
fn read_train_values(run_dirs: &[&Path], key: &str) -> Result<Vec<String>> {
    let mut found: Vec<String> = Vec::new();
    for dir in run_dirs {
        for value in crate::train_log::lines(&dir.join(crate::run_files::TRAIN_LOG))? {
            if let Some(v) = value.get(key).and_then(|v| v.as_str()) {
                if !found.iter().any(|k| k == v) {
                    found.push(v.to_string());
                }
            }
        }
    }
    Ok(found)
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
        let phases = read_phases(&dir);
        let status = match (failed_log, &eval) {
            (Some(log), _) => CellStatus::Failed {
                log: log.to_path_buf(),
            },
            (None, Some(_)) => CellStatus::Done,
            (None, None) => CellStatus::NotRun,
        };
        let node_hash = planned.cell.pretrain_node().map(|n| n.hash());
        let node = node_hash.as_ref().map(|h| runs.join(h));
        let trained_in: Vec<&Path> = node
            .iter()
            .map(|n| n.as_path())
            .chain([dir.as_path()])
            .collect();
        Ok(Self {
            node: node_hash
                .zip(node.as_ref())
                .map(|(h, d)| (h, read_phases(d))),
            planned: planned.clone(),
            epochs: read_train_log(&dir)?,
            train_commits: read_train_values(&trained_in, "commit")?,
            train_cpus: read_train_values(&trained_in, "cpu")?,
            hash,
            status,
            eval,
            episodes,
            phases,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_values_list_the_node_then_the_cell_once_each_and_skip_old_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let (node, cell) = (tmp.path().join("node"), tmp.path().join("cell"));
        for (dir, lines) in [
            (
                &node,
                vec![
                    r#"{"stage":"pretrain","epoch":0,"commit":"a"}"#,
                    r#"{"stage":"pretrain","epoch":1,"commit":"b","cpu":"Xeon (avx512f avx2 fma)"}"#,
                ],
            ),
            (
                &cell,
                vec![
                    r#"{"epoch":0,"commit":"b","cpu":"EPYC (avx2 fma)"}"#,
                    r#"{"epoch":1,"commit":"b","cpu":"Xeon (avx512f avx2 fma)"}"#,
                ],
            ),
        ] {
            std::fs::create_dir_all(dir).unwrap();
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(dir.join(crate::run_files::TRAIN_LOG), text).unwrap();
        }
        let both = [node.as_path(), cell.as_path()];
        assert_eq!(read_train_values(&both, "commit").unwrap(), ["a", "b"]);
        assert_eq!(
            read_train_values(&both, "cpu").unwrap(),
            ["Xeon (avx512f avx2 fma)", "EPYC (avx2 fma)"]
        );
        assert!(read_train_values(&[node.as_path()], "gpu")
            .unwrap()
            .is_empty());
    }
}
