//! The library's innermost CPU loops, on plain slices and free of candle, in a crate of their own so
//! that the workspace builds them at opt-level 3 even in dev and test builds (the library itself
//! stays at opt-level 1, which builds three times faster): max pooling's window scan (the fast
//! path's custom ops in `fewshot::kernels` call it), Pillow's resampling (every image a store or a
//! transform resizes) and a store's per-channel pixel sums (every image prepared). The numbers they
//! give do not depend on the opt-level: Rust never reorders or contracts floating-point arithmetic.

pub mod pillow_resize;
pub mod pixel_sums;
pub mod pool_geometry;
