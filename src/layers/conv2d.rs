//! 2-D convolution without bias (every backbone here follows it with batch norm); weight
//! `(out, in, k, k)` named `<prefix>.weight` as in PyTorch.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::{LayerOps, OpsPath};

#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    stride: usize,
    padding: usize,
    ops: LayerOps,
}

impl Conv2d {
    /// PyTorch's default (Kaiming-uniform, a = √5) initialisation when the weight is new.
    pub fn new(
        vb: VarBuilder,
        in_c: usize,
        out_c: usize,
        k: usize,
        stride: usize,
        padding: usize,
        ops: LayerOps,
    ) -> Result<Self> {
        let fan_in = (in_c * k * k) as f64;
        let bound = 1.0 / fan_in.sqrt();
        let init = candle_nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let weight = vb.get_with_hints((out_c, in_c, k, k), "weight", init)?;
        Ok(Self {
            weight,
            stride,
            padding,
            ops,
        })
    }

    /// x: (batch, in, h, w) → (batch, out, h', w')
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self.ops.path {
            OpsPath::Stock => x.conv2d(&self.weight, self.padding, self.stride, 1, 1),
            OpsPath::Fast => crate::kernels::conv_ops::conv2d(
                x,
                &self.weight,
                self.stride,
                self.padding,
                self.ops.conv(),
            ),
        }
    }
}
