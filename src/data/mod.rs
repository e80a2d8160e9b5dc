//! Datasets after download: converters that prepare stores, the store format, and episodes.

pub mod archive_members;
pub mod dataset_setup;
pub mod episode_tensors;
pub mod episodes;
pub mod frozen_episodes;
pub mod jpeg_pillow;
pub mod philox;
/// Pillow's resampling, from the workspace crate built optimised in every profile (`cpu-loops/`).
pub use fewshot_cpu_loops::pillow_resize;
pub mod prepare;
pub mod raw_image;
pub mod store;
pub mod store_subset;
pub mod transforms;
