//! The fast path's batch normalisation in training mode as candle custom ops: one forward op that
//! normalises NCHW in place of candle-nn's eight (a transpose to channel-major, mean, subtraction,
//! square, mean, division, scale, shift, and back), and a backward op for all three gradients. On
//! CUDA each is one cuDNN call (`batch_norm_cudnn`, with the `cuda` feature). The CPU formulas, with
//! per-channel sums in f64 (Ioffe & Szegedy, "Batch Normalization", 2015, §3):
//! - forward: x̂ = (x − μ)·σ⁻¹ with μ, σ² the batch mean and biased variance per channel,
//!   σ⁻¹ = 1/√(σ² + ε); y = γ·x̂ + β;
//! - backward: dβ = Σ dy; dγ = Σ dy·x̂; dx = γ·σ⁻¹·(dy − dβ/N − x̂·dγ/N), N = batch·h·w.
//!
//! An activation that follows the batch norm (a leaky ReLU, ReLU at slope 0) can be applied by the
//! same op (`activation`): its output is then act(y), and its backward passes dy through the
//! activation's backward (on act(y), whose sign is y's) before the formulas above. The same values
//! as the two ops apart, with one graph node fewer, whose backward candle would pay with a zeroed
//! data-sized gradient and an add.
//!
//! The running statistics move as candle-nn's (and PyTorch's) do: momentum m, the unbiased
//! variance: r_μ ← (1 − m)·r_μ + m·μ, r_σ² ← (1 − m)·r_σ² + m·σ²·N/(N − 1). Evaluation mode stays on
//! the stock ops (an affine map per channel).

use std::sync::{Arc, Mutex};

use candle_core::op::BackpropOp;
use candle_core::{CpuStorage, Result, Storage, Tensor, Var};
use rayon::prelude::*;

#[cfg(feature = "cuda")]
use super::cuda::{batch_norm_cudnn, nvrtc_kernels};
#[cfg(feature = "cuda")]
use super::custom_op::Operand;
use super::custom_op::{Formulas, Op};

/// Training-mode batch norm of x (batch, c, h, w) with weight γ and bias β (c), updating the running
/// statistics (c) in place, then the leaky ReLU of slope `activation` if one is given.
pub fn batch_norm_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    running: (&Tensor, &Tensor),
    (momentum, eps): (f64, f64),
    activation: Option<f64>,
) -> Result<Tensor> {
    let (batch, channels, h, w) = x.dims4()?;
    if let Some(slope) = activation.filter(|s| s.is_nan() || *s < 0.0) {
        // the backward reads the activation's mask from its output, whose sign is the input's
        // only for slopes ≥ 0
        candle_core::bail!("batch norm's fused activation needs a slope ≥ 0, got {slope}");
    }
    let n = batch * h * w;
    if n < 2 {
        candle_core::bail!("batch norm in training needs more than one value per channel, got {n}");
    }
    let statistics = ChannelPair::default();
    let op = BatchNormTrain {
        shape: (batch, channels, h * w),
        eps,
        statistics: statistics.clone(),
        activation: activation.map(|slope| slope as f32),
    };
    let y = x
        .contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, Op(op))?;
    let statistics = statistics.take(BatchNormTrain::NAME, channels)?;
    let mean = statistics
        .narrow(0, 0, channels)?
        .to_dtype(running.0.dtype())?;
    let var = statistics
        .narrow(0, channels, channels)?
        .to_dtype(running.1.dtype())?;
    // the CPU formulas leave the biased variance, cuDNN the unbiased one
    let var = if x.device().is_cpu() {
        (var * (n as f64 / (n as f64 - 1.0)))?
    } else {
        var
    };
    let (running_mean, running_var) = (Var::from_tensor(running.0)?, Var::from_tensor(running.1)?);
    running_mean.set(&((running.0 * (1.0 - momentum))? + (mean * momentum)?)?)?;
    running_var.set(&((running.1 * (1.0 - momentum))? + (var * momentum)?)?)?;
    Ok(y)
}

/// A per-channel pair of vectors, [μ, σ²] from the forward or [dγ, dβ] from the backward, handed out
/// beside the op's data-sized output (candle's custom ops return one tensor). A packed output
/// sliced by the caller would put a narrow and a reshape into the graph, and candle's backward of
/// those pads, concatenates and adds data-sized tensors: more memory traffic per layer than the
/// batch norm's own. Outside the graph (no gradient flows through it).
#[derive(Clone, Default)]
struct ChannelPair(Arc<Mutex<Option<Storage>>>);

impl ChannelPair {
    fn put(&self, storage: Storage) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(storage);
    }

    /// The pair (2c) the op put, as a tensor on the op's device.
    fn take(&self, op: &str, channels: usize) -> Result<Tensor> {
        let storage = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| {
                candle_core::Error::Msg(format!("{op}: the op left no per-channel output"))
            })?;
        Ok(Tensor::from_storage(
            storage,
            2 * channels,
            BackpropOp::none(),
            false,
        ))
    }
}

/// Per-channel mean and biased variance of NCHW data (`planes` = h·w), in f64.
fn channel_statistics(
    x: &[f32],
    (batch, channels, planes): (usize, usize, usize),
) -> Vec<(f64, f64)> {
    let n = (batch * planes) as f64;
    (0..channels)
        .into_par_iter()
        .map(|c| {
            let plane = |b: usize| &x[(b * channels + c) * planes..(b * channels + c + 1) * planes];
            let sum: f64 = (0..batch)
                .map(|b| plane(b).iter().map(|&v| v as f64).sum::<f64>())
                .sum();
            let mean = sum / n;
            let squares: f64 = (0..batch)
                .map(|b| {
                    plane(b)
                        .iter()
                        .map(|&v| (v as f64 - mean).powi(2))
                        .sum::<f64>()
                })
                .sum();
            (mean, squares / n)
        })
        .collect()
}

/// Forward: (x, γ, β) → y (or act(y)), with [μ, σ²] put in `statistics` (for the running
/// statistics). σ² is the biased variance from the CPU formulas, the unbiased one from cuDNN (which
/// computes it for its own running average).
struct BatchNormTrain {
    shape: (usize, usize, usize),
    eps: f64,
    statistics: ChannelPair,
    /// The slope of the leaky ReLU applied to y, if any.
    activation: Option<f32>,
}

impl Formulas<3> for BatchNormTrain {
    const NAME: &'static str = "fast-batch-norm";

    fn cpu(&self, [x, gamma, beta]: [&[f32]; 3]) -> Result<Vec<f32>> {
        let (batch, channels, planes) = self.shape;
        let stats = channel_statistics(x, self.shape);
        // y = x·scale + shift per channel
        let affine: Vec<(f32, f32)> = stats
            .iter()
            .enumerate()
            .map(|(c, &(mean, var))| {
                let scale = gamma[c] as f64 / (var + self.eps).sqrt();
                (scale as f32, (beta[c] as f64 - mean * scale) as f32)
            })
            .collect();
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(planes)
            .zip(x.par_chunks(planes))
            .enumerate()
            .for_each(|(k, (y, x))| {
                let (scale, shift) = affine[k % channels];
                y.iter_mut()
                    .zip(x)
                    .for_each(|(y, &x)| *y = x * scale + shift);
                if let Some(slope) = self.activation {
                    super::leaky_relu_ops::activate_in_place(y, slope);
                }
            });
        let mut pair = vec![0f32; 2 * channels];
        for (c, &(mean, var)) in stats.iter().enumerate() {
            pair[c] = mean as f32;
            pair[channels + c] = var as f32;
        }
        self.statistics.put(Storage::Cpu(CpuStorage::F32(pair)));
        debug_assert_eq!(x.len(), batch * channels * planes);
        Ok(y)
    }

    #[cfg(feature = "cuda")]
    fn cuda(&self, operands: [Operand<'_>; 3]) -> Result<candle_core::CudaStorage> {
        let shape = operands[0].1.shape();
        let (y, statistics) =
            batch_norm_cudnn::train_forward(Self::NAME, self.shape, self.eps, operands)?;
        self.statistics.put(Storage::Cuda(statistics));
        match self.activation {
            Some(slope) => nvrtc_kernels::leaky_relu_forward(
                Self::NAME,
                (&y, &candle_core::Layout::contiguous(shape)),
                slope,
            ),
            None => Ok(y),
        }
    }

    fn backward(
        &self,
        [x, gamma, _beta]: [&Tensor; 3],
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<[Option<Tensor>; 3]> {
        let channels = self.shape.1;
        // through the activation first, on its output
        let grad = match self.activation {
            Some(slope) => super::leaky_relu_ops::backward(out, grad, slope)?,
            None => grad.contiguous()?,
        };
        let parameter_gradients = ChannelPair::default();
        let dx = x.apply_op3_no_bwd(
            gamma,
            &grad,
            &Op(BatchNormBackward {
                shape: self.shape,
                eps: self.eps,
                parameter_gradients: parameter_gradients.clone(),
            }),
        )?;
        let pair = parameter_gradients.take(BatchNormBackward::NAME, channels)?;
        let dgamma = pair.narrow(0, 0, channels)?;
        let dbeta = pair.narrow(0, channels, channels)?;
        Ok([Some(dx), Some(dgamma), Some(dbeta)])
    }
}

/// Backward: (x, γ, dy) → dx, with [dγ, dβ] put in `parameter_gradients`. The batch statistics are
/// recomputed from x.
struct BatchNormBackward {
    shape: (usize, usize, usize),
    eps: f64,
    parameter_gradients: ChannelPair,
}

impl Formulas<3> for BatchNormBackward {
    const NAME: &'static str = "fast-batch-norm-backward";

    fn cpu(&self, [x, gamma, dy]: [&[f32]; 3]) -> Result<Vec<f32>> {
        let (batch, channels, planes) = self.shape;
        let n = (batch * planes) as f64;
        let stats = channel_statistics(x, self.shape);
        // per channel: σ⁻¹, Σ dy (= dβ), Σ dy·x̂ (= dγ)
        let sums: Vec<(f64, f64, f64)> = (0..channels)
            .into_par_iter()
            .map(|c| {
                let (mean, var) = stats[c];
                let inv_std = 1.0 / (var + self.eps).sqrt();
                let (mut dbeta, mut dgamma) = (0.0f64, 0.0f64);
                for b in 0..batch {
                    let at = (b * channels + c) * planes;
                    for (&x, &g) in x[at..at + planes].iter().zip(&dy[at..at + planes]) {
                        dbeta += g as f64;
                        dgamma += g as f64 * (x as f64 - mean) * inv_std;
                    }
                }
                (inv_std, dbeta, dgamma)
            })
            .collect();
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(planes)
            .zip(x.par_chunks(planes).zip(dy.par_chunks(planes)))
            .enumerate()
            .for_each(|(k, (dx, (x, dy)))| {
                let c = k % channels;
                let (mean, _) = stats[c];
                let (inv_std, dbeta, dgamma) = sums[c];
                let scale = gamma[c] as f64 * inv_std;
                let (mean_dy, mean_dy_xhat) = (dbeta / n, dgamma / n);
                for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
                    let xhat = (x as f64 - mean) * inv_std;
                    *dx = (scale * (g as f64 - mean_dy - xhat * mean_dy_xhat)) as f32;
                }
            });
        let mut pair = vec![0f32; 2 * channels];
        for (c, &(_, dbeta, dgamma)) in sums.iter().enumerate() {
            pair[c] = dgamma as f32;
            pair[channels + c] = dbeta as f32;
        }
        self.parameter_gradients
            .put(Storage::Cpu(CpuStorage::F32(pair)));
        Ok(dx)
    }

    #[cfg(feature = "cuda")]
    fn cuda(&self, operands: [Operand<'_>; 3]) -> Result<candle_core::CudaStorage> {
        let (dx, parameter_gradients) =
            batch_norm_cudnn::backward(Self::NAME, self.shape, self.eps, operands)?;
        self.parameter_gradients
            .put(Storage::Cuda(parameter_gradients));
        Ok(dx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{bits, max_relative, seeded};
    use candle_core::{DType, Device, ModuleT};

    /// The stock layer and the fast op on the same variables: outputs, the three gradients and the
    /// running statistics after one training step.
    #[test]
    fn matches_candle_nn_in_output_gradients_and_running_statistics() {
        let (channels, shape) = (3, [4usize, 3, 5, 6]);
        let make = || {
            let varmap = candle_nn::VarMap::new();
            let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            let bn =
                candle_nn::batch_norm(channels, candle_nn::BatchNormConfig::default(), vb).unwrap();
            (varmap, bn)
        };
        let (mut stock_map, stock) = make();
        let (mut fast_map, fast) = make();
        for map in [&mut stock_map, &mut fast_map] {
            map.set_one("weight", seeded(&[channels], "g", 1.0))
                .unwrap();
            map.set_one("bias", seeded(&[channels], "b", 0.0)).unwrap();
        }
        let x = Var::from_tensor(&seeded(&shape, "x", 0.5)).unwrap();
        let r = seeded(&shape, "r", 0.0);
        let y_stock = stock.forward_t(&x, true).unwrap();
        let (g, b) = fast.weight_and_bias().unwrap();
        let y_fast = batch_norm_train(
            &x,
            g,
            b,
            (fast.running_mean(), fast.running_var()),
            (fast.momentum(), fast.eps()),
            None,
        )
        .unwrap();
        assert!(max_relative(&y_fast, &y_stock) < 1e-5);
        let gs = (y_stock * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gf = (y_fast * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(max_relative(gf.get(&x).unwrap(), gs.get(&x).unwrap()) < 1e-4);
        let (sg, sb) = stock.weight_and_bias().unwrap();
        assert!(max_relative(gf.get(g).unwrap(), gs.get(sg).unwrap()) < 1e-5);
        assert!(max_relative(gf.get(b).unwrap(), gs.get(sb).unwrap()) < 1e-5);
        assert!(max_relative(fast.running_mean(), stock.running_mean()) < 1e-6);
        assert!(max_relative(fast.running_var(), stock.running_var()) < 1e-6);
    }

    /// The activation applied by the batch-norm op gives the bits of the two fast ops apart: output
    /// and the gradients of x, γ and β, for ReLU and ResNet-12's slope.
    #[test]
    fn the_fused_activation_gives_the_bits_of_the_two_ops_apart() {
        let (channels, shape) = (3, [4usize, 3, 5, 6]);
        let running = || {
            (
                Tensor::zeros(channels, DType::F32, &Device::Cpu).unwrap(),
                Tensor::ones(channels, DType::F32, &Device::Cpu).unwrap(),
            )
        };
        for slope in [0.0, 0.1] {
            let x = Var::from_tensor(&seeded(&shape, "x", 0.5)).unwrap();
            let gamma = Var::from_tensor(&seeded(&[channels], "g", 1.0)).unwrap();
            let beta = Var::from_tensor(&seeded(&[channels], "b", 0.0)).unwrap();
            let r = seeded(&shape, "r", 0.0);
            let run = |fused: bool| {
                let running = running();
                let args = (&running.0, &running.1);
                let y = if fused {
                    batch_norm_train(&x, &gamma, &beta, args, (0.1, 1e-5), Some(slope)).unwrap()
                } else {
                    let y = batch_norm_train(&x, &gamma, &beta, args, (0.1, 1e-5), None).unwrap();
                    crate::kernels::leaky_relu_ops::leaky_relu(&y, slope).unwrap()
                };
                let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let mut out = vec![bits(&y)];
                for v in [&x, &gamma, &beta] {
                    out.push(bits(grads.get(v).unwrap()));
                }
                out
            };
            assert_eq!(run(true), run(false), "slope {slope}");
        }
        // a negative slope flips the output's sign, which the backward's mask is read from: refused
        let running = running();
        let x = seeded(&shape, "x", 0.5);
        let (gamma, beta) = (seeded(&[channels], "g", 1.0), seeded(&[channels], "b", 0.0));
        let e = batch_norm_train(
            &x,
            &gamma,
            &beta,
            (&running.0, &running.1),
            (0.1, 1e-5),
            Some(-0.1),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("slope ≥ 0"), "{e}");
    }

    /// The backward formulas against central differences of the forward formula itself.
    #[test]
    fn backward_formulas_match_finite_differences_of_the_forward() {
        let shape = (3usize, 2usize, 4usize); // batch, channels, h·w
        let (batch, channels, planes) = shape;
        let total = batch * channels * planes;
        let x: Vec<f32> = seeded(&[total], "fd-x", 0.3).to_vec1().unwrap();
        let gamma = [1.5f32, -0.7];
        let beta = [0.2f32, 0.4];
        let r: Vec<f32> = seeded(&[total], "fd-r", 0.0).to_vec1().unwrap();
        let eps = 1e-5;
        let forward = |x: &[f32], gamma: &[f32], beta: &[f32]| -> f64 {
            let op = BatchNormTrain {
                shape,
                eps,
                statistics: ChannelPair::default(),
                activation: None,
            };
            let y = op.cpu([x, gamma, beta]).unwrap();
            y.iter().zip(&r).map(|(y, r)| *y as f64 * *r as f64).sum()
        };
        let parameter_gradients = ChannelPair::default();
        let backward = BatchNormBackward {
            shape,
            eps,
            parameter_gradients: parameter_gradients.clone(),
        };
        let dx = backward.cpu([&x, &gamma, &r]).unwrap();
        let pair: Vec<f32> = parameter_gradients
            .take("test", channels)
            .unwrap()
            .to_vec1()
            .unwrap();
        let h = 1e-2f32;
        let central = |plus: f64, minus: f64| (plus - minus) / (2.0 * h as f64);
        for i in 0..total {
            let (mut p, mut m) = (x.clone(), x.clone());
            p[i] += h;
            m[i] -= h;
            let numeric = central(forward(&p, &gamma, &beta), forward(&m, &gamma, &beta));
            assert!(
                (numeric - dx[i] as f64).abs() < 5e-3,
                "dx[{i}]: {numeric} vs {}",
                dx[i]
            );
        }
        for c in 0..channels {
            let (mut p, mut m) = (gamma, gamma);
            p[c] += h;
            m[c] -= h;
            let numeric = central(forward(&x, &p, &beta), forward(&x, &m, &beta));
            assert!((numeric - pair[c] as f64).abs() < 5e-3, "dγ[{c}]");
            let (mut p, mut m) = (beta, beta);
            p[c] += h;
            m[c] -= h;
            let numeric = central(forward(&x, &gamma, &p), forward(&x, &gamma, &m));
            assert!(
                (numeric - pair[channels + c] as f64).abs() < 5e-3,
                "dβ[{c}]"
            );
        }
    }
}
