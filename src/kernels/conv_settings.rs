//! How the fast path's convolutions compute, from the cell's `[backbone]` table: the arithmetic
//! (f32, TF32, bf16) and, on a GPU, which cuDNN algorithms may run. Its own file because the CPU
//! formulas, the cuDNN calls and the layer types all read it.

use crate::manifest::model::{ConvAlgorithms, ConvMath};

/// How the fast path's convolutions compute: the arithmetic, and on a GPU which cuDNN algorithms
/// may run (the cache key of the chosen ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvSettings {
    pub math: ConvMath,
    pub algorithms: ConvAlgorithms,
}

impl From<ConvMath> for ConvSettings {
    /// `math` with deterministic algorithms.
    fn from(math: ConvMath) -> Self {
        Self {
            math,
            algorithms: ConvAlgorithms::Deterministic,
        }
    }
}
