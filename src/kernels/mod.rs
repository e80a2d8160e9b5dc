//! The fast path's custom ops, apart from the layer types that call them (`layers`): each op is
//! a candle custom op whose forward and backward are themselves custom ops, stating only its
//! formulas (`custom_op` does candle's plumbing). `cpu/` holds the CPU formulas the ops share
//! (im2col + gemm convolution, TF32 rounding), `cuda/` the cuDNN and NVRTC calls the same ops make
//! on a GPU (compiled with the `cuda` feature) and the CUDA decisions the CPU tests can check
//! (`cuda_rules`). The geometry types and the convolutions' settings have files of their own, read
//! by both sides; the innermost CPU loops (max pooling's window scan) live in the workspace crate
//! `fewshot-cpu-loops` (`cpu-loops/`), which is built at opt-level 3 even in dev and test builds.

pub mod batch_norm_eval_ops;
pub mod batch_norm_ops;
pub mod conv_ops;
pub mod conv_settings;
pub mod cpu;
pub mod cuda;
pub(crate) mod custom_op;
pub mod leaky_relu_ops;
pub mod max_pool_ops;
pub(crate) mod op_operands;
/// Max pooling's geometry and window scan, from the workspace crate built optimised in every
/// profile (`cpu-loops/`).
pub use fewshot_cpu_loops::pool_geometry;

pub use conv_settings::ConvSettings;
