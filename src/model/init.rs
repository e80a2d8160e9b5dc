//! Seeded initialisation of every parameter, so a run's starting point is a function of its seed:
//! PyTorch's defaults (conv and linear weights and linear biases U(±1/√fan_in), i.e. Kaiming-uniform
//! with a = √5; batch-norm weight 1, bias 0, running mean 0, running variance 1), drawn from a Philox
//! stream keyed by (seed, parameter name) and visited in name order.

use candle_core::{Result, Tensor};
use candle_nn::VarMap;

use crate::data::philox::CounterRng;

/// Re-initialises every variable of `varmap` from `seed`. Returns how many were set.
pub fn seeded_init(varmap: &VarMap, seed: u64) -> Result<usize> {
    let vars = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let fan_in_of = |weight: &str| -> Option<usize> {
        let dims = vars.get(weight)?.dims().to_vec();
        (dims.len() >= 2).then(|| dims[1..].iter().product())
    };
    for name in &names {
        let var = &vars[*name];
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let leaf = name.rsplit('.').next().unwrap_or(name);
        let is_norm =
            name.contains(".bn") || name.contains("downsample.1") || name.starts_with("bn");
        let values: Vec<f32> = if leaf == "running_mean" || (is_norm && leaf == "bias") {
            vec![0.0; n]
        } else if leaf == "running_var" || (is_norm && leaf == "weight") {
            vec![1.0; n]
        } else {
            let fan_in = if dims.len() >= 2 {
                dims[1..].iter().product()
            } else {
                // a linear bias: the fan-in of its weight
                fan_in_of(&name.replace(".bias", ".weight")).unwrap_or(n)
            };
            let bound = 1.0 / (fan_in as f32).sqrt();
            let mut rng = CounterRng::new(
                CounterRng::key_from(&format!("fewshot-init-v1|{seed}|{name}")),
                0,
            );
            (0..n)
                .map(|_| bound * (2.0 * rng.unit_f32() - 1.0))
                .collect()
        };
        let t = Tensor::from_vec(values, dims.as_slice(), var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(names.len())
}
