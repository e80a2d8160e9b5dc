//! The fast path's leaky ReLU (and, at slope 0, its ReLU) as one candle custom op: y = x for x > 0,
//! slope·x otherwise, and a backward op dx = dy·(1 for x > 0, slope otherwise), PyTorch's convention
//! at 0 (its `leaky_relu_backward`). At slope 0 it is PyTorch's ReLU exactly: y = 0 and dx = 0 for
//! x ≤ 0 (−∞ and infinite dy included), NaN passed on (`threshold_backward`). candle-nn's `leaky_relu` builds the same function from five tensors (zeros,
//! a maximum, a minimum, a scale and a sum), every one kept alive for the backward pass, whose
//! maximum/minimum gradients add masks and divisions of their own; ResNet-12 applies it three times
//! per block, so at 84×84 it held most of the step's memory (measured in `benches/RESULTS.md`).
//! The two paths differ only at exactly x = 0 (for finite values): candle-nn's maximum/minimum
//! gradients split there, giving (1 + slope)/2·dy, and at slope 0 the stock path's `relu` passes dy
//! whole; this op gives slope·dy, as PyTorch does. The backward op has no gradient of its own
//! (no second-order derivatives), like the fast path's convolution and batch-norm ops. On CUDA each
//! pass is one kernel (`nvrtc_kernels`, with the `cuda` feature).

use candle_core::{Result, Tensor};
use rayon::prelude::*;

#[cfg(feature = "cuda")]
use super::cuda::nvrtc_kernels;
#[cfg(feature = "cuda")]
use super::custom_op::Operand;
use super::custom_op::{Formulas, Op};

/// Elements per parallel task.
const CHUNK: usize = 1 << 16;

/// Leaky ReLU of `x` with `slope` for negative inputs.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Op(LeakyRelu {
        slope: slope as f32,
    }))
}

struct LeakyRelu {
    slope: f32,
}

impl Formulas<1> for LeakyRelu {
    const NAME: &'static str = "fast-leaky-relu";

    fn cpu(&self, [x]: [&[f32]; 1]) -> Result<Vec<f32>> {
        let mut y = x.to_vec();
        let slope = self.slope;
        y.par_chunks_mut(CHUNK)
            .for_each(move |y| activate_in_place(y, slope));
        Ok(y)
    }

    #[cfg(feature = "cuda")]
    fn cuda(&self, [x]: [Operand<'_>; 1]) -> Result<candle_core::CudaStorage> {
        nvrtc_kernels::leaky_relu_forward(Self::NAME, x, self.slope)
    }

    fn backward(
        &self,
        [x]: [&Tensor; 1],
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<[Option<Tensor>; 1]> {
        Ok([Some(backward(x, grad, self.slope)?)])
    }
}

/// y ← leaky_relu(y) with `slope`, in place (the forward formula; `batch_norm_ops` applies it to its
/// output when an activation follows the batch norm).
pub(super) fn activate_in_place(y: &mut [f32], slope: f32) {
    // selects on a copied slope, which the compiler vectorises: a branch on the sign is mispredicted
    // half the time (10× slower on signed data)
    if slope == 0.0 {
        // ReLU: 0 for x ≤ 0 (also −∞, where x·0 would be NaN), NaN kept
        for y in y.iter_mut() {
            *y = if *y <= 0.0 { 0.0 } else { *y };
        }
    } else {
        for y in y.iter_mut() {
            *y = *y * if *y > 0.0 { 1.0 } else { slope };
        }
    }
}

/// dx from (x, dy). x may also be the activation's output when the slope is ≥ 0: its sign is then
/// the input's (0 or a product with the slope ≤ 0 where x ≤ 0, and NaN where x is NaN), so the same
/// dx comes out; `batch_norm_ops` passes its activated output.
pub(super) fn backward(x: &Tensor, dy: &Tensor, slope: f32) -> Result<Tensor> {
    x.apply_op2_no_bwd(&dy.contiguous()?, &Op(LeakyReluBackward { slope }))
}

/// dx from (x, dy).
struct LeakyReluBackward {
    slope: f32,
}

impl Formulas<2> for LeakyReluBackward {
    const NAME: &'static str = "fast-leaky-relu-backward";

    fn cpu(&self, [x, dy]: [&[f32]; 2]) -> Result<Vec<f32>> {
        if x.len() != dy.len() {
            candle_core::bail!("{}: x and dy differ in size", Self::NAME);
        }
        let slope = self.slope;
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
            .for_each(move |(dx, (x, dy))| {
                if slope == 0.0 {
                    // PyTorch's threshold_backward: 0 where x ≤ 0, even for an infinite dy
                    for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                        *dx = if x <= 0.0 { 0.0 } else { dy };
                    }
                } else {
                    for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                        *dx = dy * if x > 0.0 { 1.0 } else { slope };
                    }
                }
            });
        Ok(dx)
    }

    #[cfg(feature = "cuda")]
    fn cuda(&self, [x, dy]: [Operand<'_>; 2]) -> Result<candle_core::CudaStorage> {
        nvrtc_kernels::leaky_relu_backward(Self::NAME, x, dy, self.slope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{bits, max_relative, seeded};
    use candle_core::Var;

    #[test]
    fn forward_and_gradient_match_candle_nn_and_the_definition() {
        // 3·10⁵ values (several parallel chunks), none exactly 0
        let x = seeded(&[3, 5, 100, 200], "leaky-relu", 0.1);
        let var = Var::from_tensor(&x).unwrap();
        let weights = seeded(&[3, 5, 100, 200], "leaky-relu-upstream", 0.0);
        let fast = leaky_relu(var.as_tensor(), 0.1).unwrap();
        let stock = candle_nn::ops::leaky_relu(var.as_tensor(), 0.1).unwrap();
        assert!(max_relative(&fast, &stock) < 1e-7);
        let grad_fast = (&fast * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let grad_stock = (&stock * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (gf, gs) = (
            grad_fast.get(var.as_tensor()).unwrap(),
            grad_stock.get(var.as_tensor()).unwrap(),
        );
        assert!(max_relative(gf, gs) < 1e-7);
        // by the definition, element by element
        let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let ys = fast.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let ws = weights.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let gs = gf.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(xs.iter().any(|&x| x < 0.0) && xs.iter().any(|&x| x > 0.0));
        for k in 0..xs.len() {
            let (expect_y, expect_g) = if xs[k] > 0.0 {
                (xs[k], ws[k])
            } else {
                (0.1f32 * xs[k], 0.1f32 * ws[k])
            };
            assert_eq!(ys[k], expect_y, "y at {k}");
            assert_eq!(gs[k], expect_g, "dx at {k}");
        }
    }

    #[test]
    fn at_zero_the_gradient_is_the_slopes_as_in_pytorch() {
        let var = Var::from_tensor(
            &Tensor::new(&[0f32, -0.0, 1.0, -1.0], &candle_core::Device::Cpu).unwrap(),
        )
        .unwrap();
        let y = leaky_relu(var.as_tensor(), 0.1).unwrap();
        assert_eq!(y.to_vec1::<f32>().unwrap(), [0.0, 0.0, 1.0, -0.1]);
        let grads = y.sum_all().unwrap().backward().unwrap();
        let dx = grads
            .get(var.as_tensor())
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(dx, [0.1, 0.1, 1.0, 0.1]);
    }

    /// Non-finite values as PyTorch treats them: `relu` and `threshold_backward` at slope 0,
    /// `leaky_relu` and `leaky_relu_backward` at 0.1 (x = [−∞, −2, NaN, +∞, −0], dy = [+∞, −∞, 1, 2, 3]).
    #[test]
    fn infinities_and_nan_as_in_pytorch() {
        let (inf, nan) = (f32::INFINITY, f32::NAN);
        let x = Tensor::new(&[-inf, -2.0, nan, inf, -0.0], &candle_core::Device::Cpu).unwrap();
        let dy = Tensor::new(&[inf, -inf, 1.0, 2.0, 3.0], &candle_core::Device::Cpu).unwrap();
        let pass = |slope: f32| -> (Vec<u32>, Vec<u32>) {
            let y = leaky_relu(&x, slope as f64).unwrap();
            let dx = backward(&x, &dy, slope).unwrap();
            (bits(&y), bits(&dx))
        };
        let f = |v: &[f32]| bits(&Tensor::new(v, &candle_core::Device::Cpu).unwrap());
        // ReLU: +0 for every x ≤ 0 (−∞ too), NaN kept; no gradient where x ≤ 0 even from an infinite dy
        assert_eq!(pass(0.0).0, f(&[0.0, 0.0, nan, inf, 0.0]));
        assert_eq!(pass(0.0).1, f(&[0.0, 0.0, 1.0, 2.0, 0.0]));
        // leaky: slope·x below 0 (NaN at x = NaN, as x·slope), slope·dy where x ≤ 0 or NaN
        assert_eq!(pass(0.1).0, f(&[-inf, -0.2, nan, inf, -0.0]));
        assert_eq!(pass(0.1).1, f(&[inf, -inf, 0.1, 2.0, 0.3]));
    }

    #[test]
    fn the_gradient_is_the_central_difference_of_the_forward() {
        let x = seeded(&[2, 3, 4, 5], "leaky-relu-fd", 0.0);
        let weights = seeded(&[2, 3, 4, 5], "leaky-relu-fd-w", 0.0);
        let var = Var::from_tensor(&x).unwrap();
        let loss = |t: &Tensor| -> f64 {
            let y = leaky_relu(t, 0.2).unwrap();
            (y * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let grads = (leaky_relu(var.as_tensor(), 0.2).unwrap() * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let analytic = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap();
        let analytic = analytic.to_vec1::<f32>().unwrap();
        let base = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let h = 1e-3f32;
        for k in (0..base.len()).step_by(7) {
            if base[k].abs() < 2.0 * h {
                continue;
            }
            let mut plus = base.clone();
            plus[k] += h;
            let mut minus = base.clone();
            minus[k] -= h;
            let at = |v: Vec<f32>| loss(&Tensor::from_vec(v, x.shape(), x.device()).unwrap());
            let numeric = (at(plus) - at(minus)) / (2.0 * h as f64);
            assert!(
                (numeric - analytic[k] as f64).abs() < 1e-3,
                "element {k}: {numeric} vs {}",
                analytic[k]
            );
        }
    }
}
