//! The fast path's ops on a GPU: cuDNN's convolution, batch norm and pooling calls (one handle,
//! workspace and algorithm cache per device: `cudnn_handle`), the descriptors they take, and the
//! NVRTC kernels for what cuDNN has no call for — all behind the `cuda` feature. `cuda_rules`, the
//! decisions among cuDNN's answers, needs no GPU and builds everywhere, so the CPU tests check it.

#[cfg(feature = "cuda")]
pub(crate) mod batch_norm_cudnn;
#[cfg(feature = "cuda")]
pub(crate) mod conv_cudnn;
pub mod cuda_rules;
#[cfg(feature = "cuda")]
pub(crate) mod cudnn_descriptors;
#[cfg(feature = "cuda")]
pub(crate) mod cudnn_handle;
#[cfg(feature = "cuda")]
pub(crate) mod max_pool_cudnn;
#[cfg(feature = "cuda")]
pub(crate) mod nvrtc_kernels;

#[cfg(feature = "cuda")]
pub use nvrtc_kernels::compile_module as compile_nvrtc_kernels;
