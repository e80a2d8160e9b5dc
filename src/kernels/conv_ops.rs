//! The fast path's convolution as candle custom ops: the forward pass, and a backward made of two
//! more custom ops (backward-data, backward-filter), each running the formulas of `im2col` on the
//! CPU and one cuDNN call on CUDA (`conv_cudnn`, with the `cuda` feature).

use candle_core::{Layout, Result, Shape, Tensor};

#[cfg(feature = "cuda")]
use super::cuda::{conv_cudnn, cudnn_handle::ConvPass};
#[cfg(feature = "cuda")]
use super::custom_op::Operand;
use super::custom_op::{Formulas, Op};
use crate::kernels::conv_settings::ConvSettings;
use crate::kernels::cpu::im2col::{
    conv_backward_data, conv_backward_filter, conv_forward, ConvGeometry,
};
use crate::kernels::cpu::tf32_rounding::operand;
#[cfg(test)]
use crate::manifest::model::ConvMath;

/// x (batch, c_in, h, w) convolved with weight (c_out, c_in, k, k), square kernel, no bias, in the
/// arithmetic and with the GPU algorithms of `settings` (for the gradients too).
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
    settings: ConvSettings,
) -> Result<Tensor> {
    let (batch, c_in, h, w) = x.dims4()?;
    let (c_out, w_in, k, k2) = weight.dims4()?;
    if w_in != c_in || k != k2 {
        candle_core::bail!(
            "conv2d: input {:?} and weight {:?} do not fit (square kernels only)",
            x.dims(),
            weight.dims()
        );
    }
    super::op_operands::check_window_fits("conv2d", (h, w), padding, k, "kernel")?;
    let geometry = ConvGeometry {
        batch,
        c_in,
        h,
        w,
        c_out,
        k,
        stride,
        padding,
    };
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, Op(ConvForward(geometry, settings)))
}

/// Forward: (x, weight) → out.
struct ConvForward(ConvGeometry, ConvSettings);

impl Formulas<2> for ConvForward {
    const NAME: &'static str = "fast-conv2d";

    fn shape(&self, _: &Layout) -> Shape {
        let g = &self.0;
        Shape::from((g.batch, g.c_out, g.out_h(), g.out_w()))
    }

    fn cpu(&self, [x, w]: [&[f32]; 2]) -> Result<Vec<f32>> {
        let math = self.1.math;
        Ok(conv_forward(&self.0, &operand(math, x), &operand(math, w)))
    }

    #[cfg(feature = "cuda")]
    fn cuda(&self, [x, w]: [Operand<'_>; 2]) -> Result<candle_core::CudaStorage> {
        conv_cudnn::convolution_pass(&self.0, self.1, ConvPass::Forward, Self::NAME, [x, w])
    }

    fn backward(
        &self,
        [x, weight]: [&Tensor; 2],
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<[Option<Tensor>; 2]> {
        let grad = grad.contiguous()?;
        // an input outside the graph (the images, at the first layer) needs no gradient: candle
        // would compute it, store it (zeros plus an add) and never read it
        let dx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(weight, &Op(ConvBackwardData(self.0, self.1)))?)
        } else {
            None
        };
        let dw = if weight.track_op() {
            Some(x.apply_op2_no_bwd(&grad, &Op(ConvBackwardFilter(self.0, self.1)))?)
        } else {
            None
        };
        Ok([dx, dw])
    }
}

/// Backward-data: (grad, weight) → dx.
struct ConvBackwardData(ConvGeometry, ConvSettings);

impl Formulas<2> for ConvBackwardData {
    const NAME: &'static str = "fast-conv2d-backward-data";

    fn shape(&self, _: &Layout) -> Shape {
        let g = &self.0;
        Shape::from((g.batch, g.c_in, g.h, g.w))
    }

    fn cpu(&self, [grad, w]: [&[f32]; 2]) -> Result<Vec<f32>> {
        let math = self.1.math;
        Ok(conv_backward_data(
            &self.0,
            &operand(math, grad),
            &operand(math, w),
        ))
    }

    #[cfg(feature = "cuda")]
    fn cuda(&self, [grad, w]: [Operand<'_>; 2]) -> Result<candle_core::CudaStorage> {
        conv_cudnn::convolution_pass(
            &self.0,
            self.1,
            ConvPass::BackwardData,
            Self::NAME,
            [grad, w],
        )
    }
}

/// Backward-filter: (x, grad) → dW.
struct ConvBackwardFilter(ConvGeometry, ConvSettings);

impl Formulas<2> for ConvBackwardFilter {
    const NAME: &'static str = "fast-conv2d-backward-filter";

    fn shape(&self, _: &Layout) -> Shape {
        let g = &self.0;
        Shape::from((g.c_out, g.c_in, g.k, g.k))
    }

    fn cpu(&self, [x, grad]: [&[f32]; 2]) -> Result<Vec<f32>> {
        let math = self.1.math;
        Ok(conv_backward_filter(
            &self.0,
            &operand(math, x),
            &operand(math, grad),
        ))
    }

    #[cfg(feature = "cuda")]
    fn cuda(&self, [x, grad]: [Operand<'_>; 2]) -> Result<candle_core::CudaStorage> {
        conv_cudnn::convolution_pass(
            &self.0,
            self.1,
            ConvPass::BackwardFilter,
            Self::NAME,
            [x, grad],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{max_relative, seeded as seeded_around};
    use candle_core::Var;

    fn seeded(shape: &[usize], key: &str) -> Tensor {
        seeded_around(shape, key, 0.0)
    }

    #[test]
    fn forward_and_gradients_match_candles_stock_convolution() {
        for (k, stride, padding, c_in, c_out, hw) in [
            (3, 1, 1, 3, 8, 12),
            (3, 2, 1, 4, 6, 11),
            (1, 2, 0, 5, 7, 10),
            (7, 2, 3, 3, 4, 16),
        ] {
            let x = Var::from_tensor(&seeded(&[2, c_in, hw, hw], "x")).unwrap();
            let w = Var::from_tensor(&seeded(&[c_out, c_in, k, k], "w")).unwrap();
            let stock = x.conv2d(&w, padding, stride, 1, 1).unwrap();
            let fast = conv2d(&x, &w, stride, padding, ConvMath::F32.into()).unwrap();
            assert_eq!(stock.dims(), fast.dims());
            assert!(
                max_relative(&fast, &stock) <= 1e-4,
                "forward k{k} s{stride}"
            );
            let r = seeded(stock.dims(), "r");
            let stock_grads = (stock * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let fast_grads = (fast * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, var) in [("x", &x), ("w", &w)] {
                let (a, b) = (fast_grads.get(var).unwrap(), stock_grads.get(var).unwrap());
                assert!(max_relative(a, b) <= 1e-4, "d{name} k{k} s{stride}");
            }
        }
    }

    #[test]
    fn non_f32_and_misfitting_operands_are_refused_with_the_reason() {
        let x = seeded(&[1, 3, 8, 8], "x");
        let w = seeded(&[4, 2, 3, 3], "w");
        let e = conv2d(&x, &w, 1, 1, ConvMath::F32.into())
            .unwrap_err()
            .to_string();
        assert!(e.contains("do not fit"), "{e}");
        let x64 = x.to_dtype(candle_core::DType::F64).unwrap();
        let w64 = seeded(&[4, 3, 3, 3], "w")
            .to_dtype(candle_core::DType::F64)
            .unwrap();
        let e = conv2d(&x64, &w64, 1, 1, ConvMath::F32.into())
            .unwrap_err()
            .to_string();
        assert!(e.contains("f32"), "{e}");
    }
}
