//! The layer types backbones are built from. Each holds its parameters under PyTorch's names and
//! runs through an [`OpsPath`], so the implementation of the hot layers can be swapped — candle's
//! stock ops, or the fast path's custom ops in `kernels` (im2col + gemm convolution, fused
//! training-mode batch norm with the activation that follows it, a one-op leaky ReLU; cuDNN and
//! NVRTC kernels on CUDA) — without touching the model code.

mod batch_norm;
mod conv2d;
mod layer_ops;
mod leaky_relu;
mod max_pool;
mod pooling;

pub use batch_norm::BatchNorm2d;
pub use conv2d::Conv2d;
pub use leaky_relu::LeakyRelu;
pub use max_pool::MaxPool2d;
pub use pooling::{adaptive_avg_pool2d, max_pool2d};

pub use crate::kernels::ConvSettings;
pub use crate::manifest::model::{ConvAlgorithms, ConvMath, OpsPath};
pub use layer_ops::LayerOps;
