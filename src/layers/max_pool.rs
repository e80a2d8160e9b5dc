//! The max-pooling layer: a window, stride and padding, run by the stock path's strided-view maxima
//! (`pooling::max_pool2d`, zero padding: callers pool non-negative or unpadded inputs) or the fast
//! path's ops (`max_pool_ops`: one op per pass, −∞ padding, cuDNN on CUDA).

use candle_core::{Result, Tensor};

use super::{LayerOps, OpsPath};

#[derive(Debug, Clone, Copy)]
pub struct MaxPool2d {
    k: usize,
    stride: usize,
    padding: usize,
    ops: OpsPath,
}

impl MaxPool2d {
    pub fn new(k: usize, stride: usize, padding: usize, ops: LayerOps) -> Self {
        Self {
            k,
            stride,
            padding,
            ops: ops.path,
        }
    }

    /// x: (batch, c, h, w) → (batch, c, h', w')
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self.ops {
            OpsPath::Stock => super::pooling::max_pool2d(x, self.k, self.stride, self.padding),
            OpsPath::Fast => {
                crate::kernels::max_pool_ops::max_pool2d(x, self.k, self.stride, self.padding)
            }
        }
    }
}
