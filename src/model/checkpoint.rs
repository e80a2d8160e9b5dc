//! Checkpoints: every model variable (parameters and batch-norm statistics) under its own name,
//! every momentum buffer under `optim.<name>`, and the training state (epochs done, global step,
//! best validation) as the UTF-8 bytes of its JSON in a u8 tensor `train_state.json`, all in one
//! safetensors file written atomically: one rename commits weights, momentum and state together, so
//! a kill at any moment resumes on weights that match their epoch count (`state.json` beside it is a
//! readable copy written after, never read back when the checkpoint holds the state). The sampler
//! position is the global step itself (episodes and augmentations are pure functions of it), so a
//! resumed CPU run ends bit-identical to an uninterrupted one.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::few_shot::FewShotModel;
use super::optimizer::Sgd;
use crate::atomic_write::temporary_path;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub cell_hash: String,
    /// Epochs of the base-class pre-training stage done (0 when there is none).
    #[serde(default)]
    pub pretrain_epochs_done: usize,
    pub epochs_done: usize,
    pub global_step: u64,
    pub best_val: Option<f64>,
    pub best_epoch: Option<usize>,
}

fn candle_err(path: &Path) -> impl Fn(candle_core::Error) -> Error + '_ {
    move |e| Error::Invalid {
        message: format!("{}: {e}", path.display()),
    }
}

/// The tensor that holds the training state's JSON.
const STATE_TENSOR: &str = "train_state.json";

/// Saves the model (and, if given, the optimizer's buffers and the training state) to `path`.
pub fn save(
    path: &Path,
    model: &FewShotModel,
    optimizer: Option<&Sgd>,
    state: Option<&TrainState>,
) -> Result<()> {
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    if let Some(state) = state {
        let json = serde_json::to_vec(state).expect("plain struct");
        let n = json.len();
        let t = Tensor::from_vec(json, n, &candle_core::Device::Cpu).map_err(candle_err(path))?;
        tensors.insert(STATE_TENSOR.into(), t);
    }
    for (name, var) in model.varmap.data().lock().expect("varmap lock").iter() {
        tensors.insert(name.clone(), var.as_tensor().clone());
    }
    if let Some(opt) = optimizer {
        for (name, buf) in &opt.buffers {
            tensors.insert(format!("optim.{name}"), buf.clone());
        }
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let tmp = temporary_path(path);
    candle_core::safetensors::save(&tensors, &tmp).map_err(candle_err(&tmp))?;
    // on disk before the rename publishes it, and the rename on disk before the caller goes on: a
    // machine crash leaves the previous checkpoint or this one, never a zero-filled one
    let file = std::fs::File::open(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
    crate::atomic_write::sync_folder(folder.unwrap_or(Path::new(".")))
}

/// Loads a checkpoint into `model` (and the optimizer's buffers, if given); returns the training
/// state it holds, if it holds one (checkpoints written before 2026-12-04 and `checkpoint-best` do not).
pub fn load(
    path: &Path,
    model: &FewShotModel,
    optimizer: Option<&mut Sgd>,
) -> Result<Option<TrainState>> {
    let mut tensors =
        candle_core::safetensors::load(path, &model.device).map_err(candle_err(path))?;
    let state = match tensors.remove(STATE_TENSOR) {
        None => None,
        Some(t) => {
            let bytes = t.to_vec1::<u8>().map_err(candle_err(path))?;
            Some(serde_json::from_slice(&bytes).map_err(|e| Error::Invalid {
                message: format!("{}: unreadable training state: {e}", path.display()),
            })?)
        }
    };
    set_variables(
        path,
        model,
        &tensors,
        &|_| true,
        "checkpoint is from another model",
    )?;
    if let Some(opt) = optimizer {
        opt.buffers = tensors
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("optim.").map(|n| (n.to_string(), v)))
            .collect();
    }
    Ok(state)
}

/// Loads the `backbone.*` variables (parameters and batch-norm statistics) of a checkpoint into
/// `model`, leaving its head and classifier as they are: how an episodic cell starts from its
/// shared pre-training node.
pub fn load_backbone(path: &Path, model: &FewShotModel) -> Result<()> {
    let tensors = candle_core::safetensors::load(path, &model.device).map_err(candle_err(path))?;
    set_variables(
        path,
        model,
        &tensors,
        &|name| name.starts_with("backbone."),
        "pre-training checkpoint is from another backbone",
    )
}

/// Loads what evaluation reads of a checkpoint into `model`: every variable but the base-class
/// classifier `fc.*` (used only by training's losses), so that a pre-training node's checkpoint,
/// whose classifier may read a flattened map, is scored with a cell's parameter-free head.
pub fn load_for_eval(path: &Path, model: &FewShotModel) -> Result<()> {
    let tensors = candle_core::safetensors::load(path, &model.device).map_err(candle_err(path))?;
    set_variables(
        path,
        model,
        &tensors,
        &|name| !name.starts_with("fc."),
        "checkpoint is from another model",
    )
}

/// Sets every variable of `model` that `wanted` names from the checkpoint's tensor of that name; a
/// missing one is an error naming the file and `why` (the checkpoint's mismatch).
fn set_variables(
    path: &Path,
    model: &FewShotModel,
    tensors: &HashMap<String, Tensor>,
    wanted: &dyn Fn(&str) -> bool,
    why: &str,
) -> Result<()> {
    for (name, var) in model.varmap.data().lock().expect("varmap lock").iter() {
        if !wanted(name) {
            continue;
        }
        let t = tensors.get(name).ok_or_else(|| Error::Invalid {
            message: format!("{}: no tensor {name}; the {why}", path.display()),
        })?;
        var.set(t).map_err(candle_err(path))?;
    }
    Ok(())
}

/// The training state of a run folder's last commit, read without a model: the one `checkpoint-last`
/// holds, or `state.json` beside a checkpoint written before the state moved into it; `None` before
/// the first commit.
pub fn committed_state(dir: &Path) -> Result<Option<TrainState>> {
    let last = dir.join(crate::run_files::CHECKPOINT_LAST);
    if !last.is_file() {
        return Ok(None);
    }
    let mut tensors = candle_core::safetensors::load(&last, &candle_core::Device::Cpu)
        .map_err(candle_err(&last))?;
    let bytes = match tensors.remove(STATE_TENSOR) {
        Some(t) => t.to_vec1::<u8>().map_err(candle_err(&last))?,
        None => {
            let path = dir.join(crate::run_files::STATE);
            std::fs::read(&path).map_err(|e| Error::io(&path, e))?
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Invalid {
            message: format!("{}: unreadable training state: {e}", last.display()),
        })
}

/// Finishes what a kill left in a run folder, given its committed `state`: a best checkpoint
/// pending publication ([`crate::run_files::pending_best`]) is renamed to `checkpoint-best` when
/// the state names its epoch the best, and removed when its epoch was not committed (it is trained
/// again); a checkpoint's or the state's temporary file is removed. Only by the process that holds
/// the folder's lock: a live trainer publishes its own pending file right after its commit.
pub fn settle_interrupted(dir: &Path, state: &TrainState) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if let Some(n) = crate::run_files::pending_best_epochs(&name) {
            if n >= 1 && state.epochs_done == n && state.best_epoch == Some(n - 1) {
                publish_best(dir, &path)?;
                continue;
            }
        } else if !(name.ends_with(".tmp")
            && (name.starts_with(".checkpoint-") || name.starts_with(".state.json")))
        {
            continue;
        }
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// Renames a pending best checkpoint to `checkpoint-best`, once its epoch is committed.
pub fn publish_best(dir: &Path, pending: &Path) -> Result<()> {
    let best = dir.join(crate::run_files::CHECKPOINT_BEST);
    std::fs::rename(pending, &best).map_err(|e| Error::io(&best, e))?;
    crate::atomic_write::sync_folder(dir)
}
