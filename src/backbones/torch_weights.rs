//! Loading a PyTorch state dict into a model's variables by name: every variable under `prefix` must
//! find a tensor of the same shape (`num_batches_tracked` and unused entries such as torchvision's
//! `fc.*` are ignored); anything missing or misshapen is an error naming it.

use std::path::Path;

use candle_core::{Tensor, Var};
use candle_nn::VarMap;

use crate::error::{Error, Result};
use crate::torch_checkpoint::read_state_dict;

/// Copies the tensors of the checkpoint at `path` into the variables of `varmap` whose names start
/// with `prefix` (the checkpoint's names are the variables' names without it). Returns how many
/// variables were set.
pub fn load_torch_weights(varmap: &VarMap, path: &Path, prefix: &str) -> Result<usize> {
    let tensors = read_state_dict(path)?;
    let vars = varmap.data().lock().expect("varmap lock");
    let mut missing = Vec::new();
    let mut set = 0;
    for (name, var) in vars.iter() {
        let Some(key) = name.strip_prefix(prefix) else {
            continue;
        };
        let Some(t) = tensors.get(key) else {
            missing.push(key.to_string());
            continue;
        };
        set_var(var, &t.values, &t.shape).map_err(|e| Error::Invalid {
            message: format!("{}: {key}: {e}", path.display()),
        })?;
        set += 1;
    }
    if !missing.is_empty() {
        return Err(Error::Invalid {
            message: format!(
                "{}: {} parameters are missing from the checkpoint, e.g. {}",
                path.display(),
                missing.len(),
                missing
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(set)
}

fn set_var(var: &Var, values: &[f64], shape: &[usize]) -> std::result::Result<(), String> {
    if var.dims() != shape {
        return Err(format!(
            "shape {:?} in the checkpoint, {:?} in the model",
            shape,
            var.dims()
        ));
    }
    let data: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    let t = Tensor::from_vec(data, shape, var.device()).map_err(|e| e.to_string())?;
    var.set(&t.to_dtype(var.dtype()).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())
}
