//! The layer types backbones are built from. Each holds its parameters under PyTorch's names and
//! runs through an [`OpsPath`], so the implementation of the hot layers can be swapped (candle's stock
//! ops, or the fast path's custom ops: im2col + gemm convolution, fused training-mode batch norm and a
//! one-op leaky ReLU on the CPU today, cuDNN next) without
//! touching the model code.

mod batch_norm;
pub mod batch_norm_ops;
mod conv2d;
pub mod conv_ops;
pub mod im2col;
pub mod leaky_relu_ops;
mod op_operands;
mod pooling;

pub use batch_norm::BatchNorm2d;
pub use conv2d::Conv2d;
pub use pooling::{adaptive_avg_pool2d, max_pool2d};

pub use crate::manifest::model::OpsPath;
