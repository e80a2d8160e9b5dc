//! A pickle reader in plain Rust (protocols 0–5): it decodes the opcode stream into a [`Value`] tree
//! without executing anything, which is all that is needed to read numpy arrays (learn2learn's and
//! Ren et al.'s miniImageNet/tieredImageNet files) and, later, PyTorch checkpoints.
//! Reference: CPython's `Lib/pickletools.py` documents every opcode used here.

mod machine;
pub mod numpy;
mod value;

pub use machine::parse;
pub use numpy::{ArrayData, NdArray};
pub use value::Value;
