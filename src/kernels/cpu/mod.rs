//! The CPU formulas the fast path's ops share, on plain f32 slices: the convolution and its two
//! gradients as im2col + gemm, and TF32 rounding for measuring TF32's accuracy without a GPU.

pub mod im2col;
pub mod tf32_rounding;
