//! The layer types backbones are built from. Each holds its parameters under PyTorch's names and
//! runs through an [`OpsPath`], so the implementation of the hot layers can be swapped (candle's stock
//! ops, or the fast path's custom ops: im2col + gemm convolution, fused training-mode batch norm (with
//! the activation that follows it) and a one-op leaky ReLU, on cuDNN and NVRTC kernels on CUDA) without
//! touching the model code. The fast path's in-place SGD update (`sgd_update_ops`) lives here too, beside
//! the kernels it shares.

mod batch_norm;
#[cfg(feature = "cuda")]
mod batch_norm_cudnn;
pub mod batch_norm_eval_ops;
pub mod batch_norm_ops;
mod conv2d;
#[cfg(feature = "cuda")]
mod conv_cudnn;
pub mod conv_ops;
pub mod cuda_rules;
#[cfg(feature = "cuda")]
mod cudnn_descriptors;
#[cfg(feature = "cuda")]
mod cudnn_handle;
pub mod im2col;
mod layer_ops;
mod leaky_relu;
pub mod leaky_relu_ops;
mod max_pool;
#[cfg(feature = "cuda")]
mod max_pool_cudnn;
pub mod max_pool_ops;
#[cfg(feature = "cuda")]
mod nvrtc_kernels;
pub(crate) mod op_operands;
mod pooling;
pub mod sgd_update_ops;
pub mod tf32_rounding;

pub use batch_norm::BatchNorm2d;
pub use conv2d::Conv2d;
pub use leaky_relu::LeakyRelu;
pub use max_pool::MaxPool2d;
pub use pooling::{adaptive_avg_pool2d, max_pool2d};

pub use crate::manifest::model::{ConvAlgorithms, ConvMath, OpsPath};
pub use layer_ops::{ConvSettings, LayerOps};
#[cfg(feature = "cuda")]
pub use nvrtc_kernels::compile_module as compile_nvrtc_kernels;
