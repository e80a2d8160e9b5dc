//! Evaluating a trained cell on its frozen test episodes: `runs/<hash>/episodes.jsonl` (each
//! episode's accuracy and mean query loss) and `runs/<hash>/eval.json` (mean, 95% CI and the formula, with the provenance every
//! reported number carries: cell hash, store fingerprint, episode-file hash, seed, git commit).
//! [`Episodes::Val`] scores the frozen validation episodes instead (`episodes-val*.jsonl`), for
//! choosing between recipes without looking at test episodes.

use std::path::{Path, PathBuf};

use candle_core::Device;

use super::episode_file::write_episode_accuracies;
use super::runner::{evaluate, summarise};
use super::stats::CI_FORMULA;
use crate::atomic_write::write_json;
use crate::error::{Error, Result};
use crate::manifest::cell::CellConfig;
use crate::model::checkpoint;
use crate::model::episode_batch::transforms;
use crate::model::few_shot::FewShotModel;
use crate::model::run_context::{CellData, RunPaths};

pub use super::summary::EvalSummary;

/// Which weights an evaluation uses.
#[derive(Debug, Clone, PartialEq)]
pub enum Weights {
    /// `runs/<hash>/checkpoint-best.safetensors`; outputs `episodes.jsonl`, `eval.json`.
    BestOfRun,
    /// The seeded initialisation; outputs `episodes-untrained.jsonl`, `eval-untrained.json`.
    Untrained,
    /// A checkpoint file (the CI gate's committed one); outputs `episodes-<file stem>.jsonl`.
    File(PathBuf),
    /// Another codebase's PyTorch checkpoint of the cell's backbone, renamed by a key map, on the
    /// seeded head; outputs `episodes-torch-<file stem>.jsonl`.
    TorchBackbone {
        checkpoint: PathBuf,
        key_map: Option<crate::manifest::key_map::KeyMap>,
    },
}

/// Which frozen episodes an evaluation scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Episodes {
    /// The first `eval.test_episodes` test episodes: the reported numbers.
    Test,
    /// Every frozen validation episode (classes disjoint from train and test): for model and
    /// recipe selection.
    Val,
}

/// Evaluates `weights` on the first `eval.test_episodes` frozen test episodes and writes the
/// outputs into the run folder.
pub fn eval_cell(
    cell: &CellConfig,
    paths: &RunPaths,
    device: &Device,
    weights: &Weights,
) -> Result<EvalSummary> {
    eval_cell_on(cell, paths, device, weights, Episodes::Test)
}

/// A best checkpoint a kill left pending (its run's last epoch committed, the rename to
/// `checkpoint-best` not yet done) is published first, or removed if its epoch was not committed, so
/// that an evaluation never reads an older best; refused while a training process works in the folder.
fn settle_before_eval(dir: &Path) -> Result<()> {
    if !crate::run_files::has_pending_best(dir) {
        return Ok(());
    }
    let Some(_held) = crate::run_lock::try_lock(dir)? else {
        return Err(Error::invalid(format!(
            "{}: a training process is working in this run folder; evaluate it when that has finished",
            dir.display()
        )));
    };
    match checkpoint::committed_state(dir)? {
        Some(state) => checkpoint::settle_interrupted(dir, &state),
        None => Ok(()),
    }
}

/// Loads `weights` into `model` (the run folder `dir` holds the best checkpoint); returns the name the
/// summary records and the suffix of the output files.
fn load_weights(model: &FewShotModel, dir: &Path, weights: &Weights) -> Result<(String, String)> {
    Ok(match weights {
        Weights::Untrained => ("untrained".to_string(), "-untrained".to_string()),
        Weights::BestOfRun => {
            settle_before_eval(dir)?;
            let path: PathBuf = dir.join(crate::run_files::CHECKPOINT_BEST);
            if !path.is_file() {
                return Err(Error::invalid(format!(
                    "{}: no trained checkpoint; run `fewshot train --config <cell.toml>` first",
                    path.display()
                )));
            }
            checkpoint::load_for_eval(&path, model)?;
            (crate::run_files::CHECKPOINT_BEST.to_string(), String::new())
        }
        Weights::File(path) => {
            if !path.is_file() {
                return Err(Error::invalid(format!(
                    "{}: no such checkpoint file",
                    path.display()
                )));
            }
            checkpoint::load_for_eval(path, model)?;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            (path.display().to_string(), format!("-{stem}"))
        }
        Weights::TorchBackbone {
            checkpoint,
            key_map,
        } => {
            let set = crate::backbones::load_mapped_torch_weights(
                &model.varmap,
                checkpoint,
                "backbone.",
                key_map.as_ref(),
            )?;
            tracing::info!("{}: {set} backbone tensors loaded", checkpoint.display());
            let stem = checkpoint
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            (
                format!(
                    "{} (PyTorch backbone{})",
                    checkpoint.display(),
                    key_map
                        .as_ref()
                        .map(|m| format!(", key map {}", m.name))
                        .unwrap_or_default()
                ),
                format!("-torch-{stem}"),
            )
        }
    })
}

/// [`eval_cell`] on the chosen episodes; validation outputs carry `-val` in their names.
pub fn eval_cell_on(
    cell: &CellConfig,
    paths: &RunPaths,
    device: &Device,
    weights: &Weights,
    on: Episodes,
) -> Result<EvalSummary> {
    let data = CellData::open(cell, paths)?;
    let model = data.model(cell, paths, device)?;
    let dir = paths.run_dir(cell);
    let (checkpoint_name, suffix) = load_weights(&model, &dir, weights)?;
    let (store, episodes, episodes_sha256, suffix) = match on {
        Episodes::Test => {
            let n = cell.eval.test_episodes.min(data.test_episodes.len());
            let e = &data.test_episodes[..n];
            (&data.test, e, &data.test_sha256, suffix)
        }
        Episodes::Val => (
            &data.val,
            &data.val_episodes[..],
            &data.val_sha256,
            format!("-val{suffix}"),
        ),
    };
    let (test_transform, _) = transforms(cell);
    let label = match on {
        Episodes::Test => "test episodes",
        Episodes::Val => "validation episodes",
    };
    let records = evaluate(&model, store, episodes, test_transform, label)
        .map_err(|e| Error::invalid(format!("evaluation failed: {e}")))?;
    let stats = summarise(&records);
    let summary = EvalSummary {
        cell_hash: cell.hash(),
        dataset: cell.dataset.clone(),
        method: cell.head.name().to_string(),
        shot: cell.episode.n_shot,
        mean: stats.mean,
        ci95: stats.ci95,
        n: stats.n,
        ci_formula: CI_FORMULA.to_string(),
        store_fingerprint: store.header.fingerprint.clone(),
        episodes_sha256: episodes_sha256.clone(),
        seed: cell.seed,
        checkpoint: checkpoint_name.clone(),
        device: if device.is_cuda() {
            "cuda".into()
        } else {
            "cpu".into()
        },
        threads: Some(crate::threads::pin_thread_count()),
        cpu: crate::threads::cpu_of(device).map(str::to_string),
        git_commit: crate::git_state::git_commit(&paths.manifests),
        build_commit: Some(crate::git_state::BUILD_COMMIT.to_string()),
    };
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    write_episode_accuracies(&dir.join(crate::run_files::episodes(&suffix)), &records)?;
    write_json(&dir.join(crate::run_files::eval(&suffix)), &summary)?;
    Ok(summary)
}
