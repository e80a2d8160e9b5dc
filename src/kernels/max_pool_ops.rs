//! The fast path's max pooling as candle custom ops, PyTorch's `max_pool2d` semantics: each output is
//! the maximum of its k×k window, padding positions never win (−∞ padding), and the backward op
//! routes each output's gradient to the first maximum of its window in row-major order (recomputed
//! from x and the pooled output, so nothing is kept between the passes). One op per pass instead of
//! the stock path's strided views and pairwise maxima (`pooling::max_pool2d`, whose zero padding is
//! exact only after a ReLU). On CUDA each pass is one cuDNN call (`max_pool_cudnn`, with the `cuda`
//! feature). The backward op has no gradient of its own (no second-order derivatives).

use candle_core::{Layout, Result, Shape, Tensor};
use rayon::prelude::*;

#[cfg(feature = "cuda")]
use super::cuda::max_pool_cudnn;
#[cfg(feature = "cuda")]
use super::custom_op::Operand;
use super::custom_op::{Formulas, Op};
use super::pool_geometry::PoolGeometry;

/// Max pooling of x (batch, c, h, w) over `k`×`k` windows with `stride` and `padding`.
pub fn max_pool2d(x: &Tensor, k: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let (batch, channels, h, w) = x.dims4()?;
    if k == 0 || stride == 0 {
        candle_core::bail!("max_pool2d: window {k} and stride {stride} must be at least 1");
    }
    if 2 * padding > k {
        candle_core::bail!("max_pool2d: padding {padding} must be at most half the window {k}");
    }
    super::op_operands::check_window_fits("max_pool2d", (h, w), padding, k, "window")?;
    let g = PoolGeometry {
        batch,
        channels,
        h,
        w,
        k,
        stride,
        padding,
    };
    x.contiguous()?.apply_op1(Op(MaxPool(g)))
}

/// Forward: x → y.
struct MaxPool(PoolGeometry);

impl Formulas<1> for MaxPool {
    const NAME: &'static str = "fast-max-pool2d";

    fn shape(&self, _: &Layout) -> Shape {
        let g = &self.0;
        Shape::from((g.batch, g.channels, g.out_h(), g.out_w()))
    }

    fn cpu(&self, [x]: [&[f32]; 1]) -> Result<Vec<f32>> {
        let g = &self.0;
        let (oh, ow) = (g.out_h(), g.out_w());
        let mut y = vec![0f32; g.batch * g.channels * oh * ow];
        y.par_chunks_mut(oh * ow)
            .zip(x.par_chunks(g.h * g.w))
            .for_each(|(y, plane)| g.forward_plane(plane, y));
        Ok(y)
    }

    #[cfg(feature = "cuda")]
    fn cuda(&self, [x]: [Operand<'_>; 1]) -> Result<candle_core::CudaStorage> {
        max_pool_cudnn::forward(&self.0, Self::NAME, x)
    }

    fn backward(
        &self,
        [x]: [&Tensor; 1],
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<[Option<Tensor>; 1]> {
        let dx = x.apply_op3_no_bwd(y, &grad.contiguous()?, &Op(MaxPoolBackward(self.0)))?;
        Ok([Some(dx)])
    }
}

/// Backward: (x, y, dy) → dx.
struct MaxPoolBackward(PoolGeometry);

impl Formulas<3> for MaxPoolBackward {
    const NAME: &'static str = "fast-max-pool2d-backward";

    fn shape(&self, _: &Layout) -> Shape {
        let g = &self.0;
        Shape::from((g.batch, g.channels, g.h, g.w))
    }

    fn cpu(&self, [x, _y, dy]: [&[f32]; 3]) -> Result<Vec<f32>> {
        let g = &self.0;
        let (oh, ow) = (g.out_h(), g.out_w());
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(g.h * g.w)
            .zip(x.par_chunks(g.h * g.w).zip(dy.par_chunks(oh * ow)))
            .for_each(|(dx, (plane, dy))| g.backward_plane(plane, dy, dx));
        Ok(dx)
    }

    #[cfg(feature = "cuda")]
    fn cuda(&self, operands: [Operand<'_>; 3]) -> Result<candle_core::CudaStorage> {
        max_pool_cudnn::backward(&self.0, Self::NAME, operands)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{gradient, max_relative, seeded, values};
    use candle_core::Var;

    /// The definition, element by element, with −∞ padding: negative inputs at the border.
    #[test]
    fn forward_is_the_window_maximum_and_padding_never_wins() {
        for (k, stride, padding) in [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 1)] {
            let x = seeded(&[2, 3, 7, 9], "pool-x", -0.5);
            let y = max_pool2d(&x, k, stride, padding).unwrap();
            let (oh, ow) = (
                (7 + 2 * padding - k) / stride + 1,
                (9 + 2 * padding - k) / stride + 1,
            );
            assert_eq!(y.dims(), &[2, 3, oh, ow]);
            let xv: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
            let yv: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
            for p in 0..6 {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut m = f32::NEG_INFINITY;
                        for dy in 0..k {
                            for dx in 0..k {
                                let (r, c) = (
                                    (oy * stride + dy) as isize - padding as isize,
                                    (ox * stride + dx) as isize - padding as isize,
                                );
                                if (0..7).contains(&r) && (0..9).contains(&c) {
                                    m = m.max(xv[p * 63 + r as usize * 9 + c as usize]);
                                }
                            }
                        }
                        assert_eq!(yv[(p * oh + oy) * ow + ox], m, "k{k} s{stride} p{padding}");
                    }
                }
            }
        }
    }

    /// Against the stock path on positive inputs (no ties, zero padding exact): output and gradient.
    #[test]
    fn matches_the_stock_pooling_in_output_and_gradient() {
        for (k, stride, padding) in [(2, 2, 0), (3, 2, 1)] {
            let x = Var::from_tensor(&seeded(&[2, 4, 10, 11], "pool-stock", 2.0)).unwrap();
            let stock = crate::layers::max_pool2d(&x, k, stride, padding).unwrap();
            let fast = max_pool2d(&x, k, stride, padding).unwrap();
            assert_eq!(max_relative(&fast, &stock), 0.0);
            let r = seeded(stock.dims(), "pool-r", 0.0);
            let gs = (stock * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gf = (fast * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let (gs, gf) = (gs.get(&x).unwrap(), gf.get(&x).unwrap());
            assert!(max_relative(gf, gs) < 1e-6, "k{k} s{stride} p{padding}");
        }
    }

    /// The backward formula against central differences of the forward (no ties within h of each
    /// other in a window, so the maximum does not switch under the perturbation).
    #[test]
    fn the_gradient_is_the_central_difference_of_the_forward() {
        let x = seeded(&[1, 2, 6, 6], "pool-fd", 0.0);
        let r = seeded(&[1, 2, 3, 3], "pool-fd-r", 0.0);
        let loss = |t: &Tensor| -> f64 {
            (max_pool2d(t, 3, 2, 1).unwrap() * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let var = Var::from_tensor(&x).unwrap();
        let grads = (max_pool2d(&var, 3, 2, 1).unwrap() * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let analytic: Vec<f32> = gradient(&grads, &var);
        let xv: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let h = 1e-3f32;
        for i in 0..xv.len() {
            let shifted = |d: f32| {
                let mut v = xv.clone();
                v[i] += d;
                Tensor::from_vec(v, x.dims(), x.device()).unwrap()
            };
            let numeric = (loss(&shifted(h)) - loss(&shifted(-h))) / (2.0 * h as f64);
            assert!(
                (numeric - analytic[i] as f64).abs() < 1e-3,
                "dx[{i}]: {numeric} vs {}",
                analytic[i]
            );
        }
    }

    /// The gradient of Σ out with respect to x, flattened.
    fn flat_gradient(out: &Tensor, x: &Var) -> Vec<f32> {
        let grads = out.sum_all().unwrap().backward().unwrap();
        gradient(&grads, x)
    }

    #[test]
    fn ties_go_to_the_first_maximum_and_bad_windows_are_refused() {
        let x = Var::from_tensor(
            &Tensor::new(&[[[[1f32, 1.0], [1.0, 0.0]]]], &candle_core::Device::Cpu).unwrap(),
        )
        .unwrap();
        let y = max_pool2d(&x, 2, 2, 0).unwrap();
        assert_eq!(flat_gradient(&y, &x), [1.0, 0.0, 0.0, 0.0]);
        // NaN wins its window, the first NaN takes the gradient; an all −∞ window gives −∞ and
        // its first element the gradient (rows: windows [1, NaN, 3, NaN], [NaN, 5, 0, 0], [−∞ ×4])
        let (nan, inf) = (f32::NAN, f32::NEG_INFINITY);
        let x = Var::from_tensor(
            &Tensor::new(
                &[[[
                    [1f32, nan, 3.0, nan],
                    [nan, 5.0, 0.0, 0.0],
                    [inf, inf, inf, inf],
                ]]],
                &candle_core::Device::Cpu,
            )
            .unwrap()
            .reshape((3, 1, 2, 2))
            .unwrap(),
        )
        .unwrap();
        let y: Vec<f32> = values(&max_pool2d(&x, 2, 2, 0).unwrap());
        assert!(y[0].is_nan() && y[1].is_nan() && y[2] == inf, "{y:?}");
        let upstream = Tensor::new(&[2f32, 3.0, 4.0], &candle_core::Device::Cpu)
            .unwrap()
            .reshape((3, 1, 1, 1))
            .unwrap();
        let weighted = (max_pool2d(&x, 2, 2, 0).unwrap() * upstream).unwrap();
        assert_eq!(
            flat_gradient(&weighted, &x),
            [0.0, 2.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0]
        );
        let x = seeded(&[1, 1, 4, 4], "bad", 0.0);
        let e = max_pool2d(&x, 2, 2, 2).unwrap_err().to_string();
        assert!(e.contains("at most half"), "{e}");
        let e = max_pool2d(&x, 5, 1, 0).unwrap_err().to_string();
        assert!(e.contains("smaller than"), "{e}");
    }
}
