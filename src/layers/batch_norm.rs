//! 2-D batch normalisation with PyTorch's semantics: batch statistics and a 0.1-momentum update of
//! `running_mean`/`running_var` in training, the running statistics in evaluation; eps 1e-5.

use candle_core::{ModuleT, Result, Tensor};
use candle_nn::VarBuilder;

use super::{LayerOps, LeakyRelu, OpsPath};

#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    inner: candle_nn::BatchNorm,
    ops: OpsPath,
}

impl BatchNorm2d {
    pub fn new(vb: VarBuilder, channels: usize, ops: LayerOps) -> Result<Self> {
        let inner = candle_nn::batch_norm(channels, candle_nn::BatchNormConfig::default(), vb)?;
        Ok(Self {
            inner,
            ops: ops.path,
        })
    }

    /// x: (batch, c, h, w) → same shape
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self.ops {
            OpsPath::Fast if train => self.fast_train(x, None),
            OpsPath::Fast => {
                let (weight, bias) = self.inner.weight_and_bias().expect("affine batch norm");
                crate::kernels::batch_norm_eval_ops::batch_norm_eval(
                    x,
                    weight,
                    bias,
                    (self.inner.running_mean(), self.inner.running_var()),
                    self.inner.eps(),
                )
            }
            OpsPath::Stock => self.inner.forward_t(x, train),
        }
    }

    /// `activation(forward(x))`; in training on the fast path one op (one graph node fewer, the same
    /// values).
    pub fn forward_activated(
        &self,
        x: &Tensor,
        train: bool,
        activation: &LeakyRelu,
    ) -> Result<Tensor> {
        match self.ops {
            OpsPath::Fast if train => self.fast_train(x, Some(activation.slope())),
            _ => activation.forward(&self.forward(x, train)?),
        }
    }

    fn fast_train(&self, x: &Tensor, activation: Option<f64>) -> Result<Tensor> {
        let (weight, bias) = self.inner.weight_and_bias().expect("affine batch norm");
        crate::kernels::batch_norm_ops::batch_norm_train(
            x,
            weight,
            bias,
            (self.inner.running_mean(), self.inner.running_var()),
            (self.inner.momentum(), self.inner.eps()),
            activation,
        )
    }
}
