//! Checkpoints: every model variable (parameters and batch-norm statistics) under its own name and
//! every momentum buffer under `optim.<name>`, in one safetensors file written atomically, plus a
//! small JSON state (epochs done, global step, best validation). The sampler position is the global
//! step itself (episodes and augmentations are pure functions of it), so a resumed CPU run ends
//! bit-identical to an uninterrupted one.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::model::FewShotModel;
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

/// Saves the model (and, if given, the optimizer's buffers) to `path`.
pub fn save(path: &Path, model: &FewShotModel, optimizer: Option<&Sgd>) -> Result<()> {
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
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
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Loads a checkpoint into `model` (and the optimizer's buffers, if given).
pub fn load(path: &Path, model: &FewShotModel, optimizer: Option<&mut Sgd>) -> Result<()> {
    let tensors = candle_core::safetensors::load(path, &model.device).map_err(candle_err(path))?;
    for (name, var) in model.varmap.data().lock().expect("varmap lock").iter() {
        let t = tensors.get(name).ok_or_else(|| Error::Invalid {
            message: format!(
                "{}: no tensor {name}; the checkpoint is from another model",
                path.display()
            ),
        })?;
        var.set(t).map_err(candle_err(path))?;
    }
    if let Some(opt) = optimizer {
        opt.buffers = tensors
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("optim.").map(|n| (n.to_string(), v)))
            .collect();
    }
    Ok(())
}
