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
    load_mapped_torch_weights(varmap, path, prefix, None)
}

/// [`load_torch_weights`] with the checkpoint's keys first renamed by `key_map` (another codebase's
/// naming, `manifests/key-maps/`).
pub fn load_mapped_torch_weights(
    varmap: &VarMap,
    path: &Path,
    prefix: &str,
    key_map: Option<&crate::manifest::key_map::KeyMap>,
) -> Result<usize> {
    let mut tensors = read_state_dict(path)?;
    if let Some(map) = key_map {
        tensors = map.apply(tensors).map_err(|message| Error::Invalid {
            message: format!("{}: {message}", path.display()),
        })?;
    }
    let vars = varmap.data().lock().expect("varmap lock");
    let mut missing = Vec::new();
    // every name first, so a checkpoint that does not fit changes nothing and the error lists what is
    // missing (sorted, not in the map's order)
    let mut wanted: Vec<(&String, &Var, &str)> = vars
        .iter()
        .filter_map(|(name, var)| name.strip_prefix(prefix).map(|key| (name, var, key)))
        .collect();
    wanted.sort_by(|a, b| a.0.cmp(b.0));
    for (_, _, key) in &wanted {
        if !tensors.contains_key(*key) {
            missing.push(key.to_string());
        }
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
    if let Some((_, var, key)) = wanted
        .iter()
        .find(|(_, var, key)| var.dims() != tensors[*key].shape.as_slice())
    {
        return Err(Error::Invalid {
            message: format!(
                "{}: {key}: shape {:?} in the checkpoint, {:?} in the model",
                path.display(),
                tensors[*key].shape,
                var.dims()
            ),
        });
    }
    let mut set = 0;
    for (_, var, key) in wanted {
        let t = &tensors[key];
        set_var(var, &t.values, &t.shape).map_err(|e| Error::Invalid {
            message: format!("{}: {key}: {e}", path.display()),
        })?;
        set += 1;
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
