//! Evaluation: per-episode accuracy on frozen episodes, and the statistics reported from it.

#[cfg(feature = "train")]
pub mod cell_eval;
pub mod episode_file;
#[cfg(feature = "train")]
pub mod episode_logits;
pub mod gate;
#[cfg(feature = "train")]
pub mod runner;
pub mod stats;
pub mod summary;
