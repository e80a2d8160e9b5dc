//! The fast path's batch norm in evaluation mode as one candle custom op: y = ((x − r_μ) / d)·γ + β
//! per channel, d = √(r_σ² + ε), in place of candle-nn's four broadcast ops and their three
//! intermediate tensors. The same f32 operations in the same order as candle-nn's `forward_eval`
//! (d itself is computed by the same tensor expression), so on the CPU the result is bit-identical
//! to the stock path's (tested); on CUDA one NVRTC kernel (`nvrtc_kernels`, with the `cuda` feature).
//! Its backward (through γ and β; the running statistics are not trained) is built from tensor
//! ops: evaluation mode runs without gradients in this suite, so it need not be fast.

use candle_core::{Result, Tensor, D};
use rayon::prelude::*;

#[cfg(feature = "cuda")]
use super::custom_op::Operand;
use super::custom_op::{Formulas, Op};

/// Evaluation-mode batch norm of x (batch, c, h, w) with γ, β and the running statistics (c each).
pub fn batch_norm_eval(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    (running_mean, running_var): (&Tensor, &Tensor),
    eps: f64,
) -> Result<Tensor> {
    let (batch, channels, h, w) = x.dims4()?;
    let deviation = (running_var.detach() + eps)?.sqrt()?;
    // per channel: [r_μ, d, γ, β]
    let parameters = Tensor::cat(
        &[
            &running_mean.detach().contiguous()?,
            &deviation.contiguous()?,
            &weight.contiguous()?,
            &bias.contiguous()?,
        ],
        0,
    )?;
    x.contiguous()?.apply_op2(
        &parameters,
        Op(ChannelNormalise {
            shape: (batch, channels, h * w),
        }),
    )
}

/// (x, [r_μ, d, γ, β]) → y.
struct ChannelNormalise {
    shape: (usize, usize, usize),
}

impl Formulas<2> for ChannelNormalise {
    const NAME: &'static str = "fast-batch-norm-eval";

    fn cpu(&self, [x, p]: [&[f32]; 2]) -> Result<Vec<f32>> {
        let (_, channels, planes) = self.shape;
        if p.len() != 4 * channels {
            candle_core::bail!("{}: expected 4 × {channels} parameters", Self::NAME);
        }
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(planes)
            .zip(x.par_chunks(planes))
            .enumerate()
            .for_each(|(k, (y, x))| {
                let c = k % channels;
                let (mean, deviation) = (p[c], p[channels + c]);
                let (gamma, beta) = (p[2 * channels + c], p[3 * channels + c]);
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = ((x - mean) / deviation) * gamma + beta;
                }
            });
        Ok(y)
    }

    #[cfg(feature = "cuda")]
    fn cuda(&self, [x, p]: [Operand<'_>; 2]) -> Result<candle_core::CudaStorage> {
        crate::kernels::cuda::nvrtc_kernels::channel_normalise(Self::NAME, self.shape, x, p)
    }

    fn backward(
        &self,
        [x, parameters]: [&Tensor; 2],
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<[Option<Tensor>; 2]> {
        let (_, channels, _) = self.shape;
        let per_channel = |k: usize| -> Result<Tensor> {
            parameters
                .narrow(0, k * channels, channels)?
                .reshape((1, channels, 1, 1))
        };
        let (mean, deviation, gamma) = (per_channel(0)?, per_channel(1)?, per_channel(2)?);
        let normalised = x.broadcast_sub(&mean)?.broadcast_div(&deviation)?;
        let dx = grad.broadcast_mul(&gamma.broadcast_div(&deviation)?)?;
        let over_channels =
            |t: Tensor| -> Result<Tensor> { t.transpose(0, 1)?.flatten_from(1)?.sum(D::Minus1) };
        let dgamma = over_channels((grad * normalised)?)?;
        let dbeta = over_channels(grad.clone())?;
        let zeros = Tensor::zeros(2 * channels, grad.dtype(), grad.device())?;
        let dparameters = Tensor::cat(&[&zeros, &dgamma, &dbeta], 0)?;
        Ok([Some(dx), Some(dparameters)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{max_relative, seeded};
    use candle_core::{DType, Device, ModuleT, Var};

    /// Bit-identical to candle-nn's evaluation-mode batch norm, and the same gradients for x, γ, β.
    #[test]
    fn equals_candle_nn_in_evaluation_bit_for_bit_with_its_gradients() {
        let (channels, shape) = (5, [3usize, 5, 6, 7]);
        let varmap = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let bn =
            candle_nn::batch_norm(channels, candle_nn::BatchNormConfig::default(), vb).unwrap();
        let mut varmap = varmap;
        varmap
            .set_one("weight", seeded(&[channels], "eval-g", 1.0))
            .unwrap();
        varmap
            .set_one("bias", seeded(&[channels], "eval-b", 0.0))
            .unwrap();
        // running statistics away from their initial 0 and 1: one training step moves them
        bn.forward_t(&seeded(&shape, "eval-warm", 0.7), true)
            .unwrap();
        let x = Var::from_tensor(&seeded(&shape, "eval-x", 0.3)).unwrap();
        let stock = bn.forward_t(&x, false).unwrap();
        let (g, b) = bn.weight_and_bias().unwrap();
        let fast =
            batch_norm_eval(&x, g, b, (bn.running_mean(), bn.running_var()), bn.eps()).unwrap();
        let (sv, fv): (Vec<f32>, Vec<f32>) = (
            stock.flatten_all().unwrap().to_vec1().unwrap(),
            fast.flatten_all().unwrap().to_vec1().unwrap(),
        );
        assert!(sv.iter().zip(&fv).all(|(a, b)| a.to_bits() == b.to_bits()));
        let r = seeded(&shape, "eval-r", 0.0);
        let gs = (stock * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gf = (fast * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, t) in [("x", x.as_tensor()), ("gamma", g), ("beta", b)] {
            let e = max_relative(gf.get(t).unwrap(), gs.get(t).unwrap());
            assert!(e < 1e-5, "d{name}: {e}");
        }
    }
}
