//! fewshot: a reproducible benchmarking suite for few-shot image classification.
//!
//! The library holds everything the `fewshot` binary and `cargo xtask` do: manifests, verified
//! downloads, dataset preparation into stores, frozen episodes and (behind the `train` feature)
//! the learning core. See `ARCHITECTURE.md` for the data flow.

pub mod allocator;
pub mod atomic_write;
#[cfg(feature = "train")]
pub mod backbones;
pub mod clock;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod fetch;
pub mod git_state;
#[cfg(feature = "train")]
pub mod heads;
#[cfg(feature = "train")]
pub mod kernels;
#[cfg(feature = "train")]
pub mod layers;
pub mod logging;
pub mod manifest;
pub mod matching;
#[cfg(feature = "train")]
pub mod model;
pub mod pickle;
pub mod progress;
pub mod report;
pub mod run_files;
pub mod run_folders;
pub mod run_lock;
pub mod sabotage;
#[cfg(all(test, feature = "train"))]
mod test_support;
pub mod threads;
pub mod torch_checkpoint;
#[cfg(feature = "train")]
pub mod train;
pub mod train_log;

pub use error::{Error, Result};
