//! What a backbone's layers run: the ops path (candle's stock ops or the fast path's custom ops) and,
//! on the fast path, the convolutions' arithmetic — both from the cell's `[backbone]` table.

use crate::kernels::ConvSettings;
use crate::manifest::model::{BackboneConfig, ConvAlgorithms, ConvMath, OpsPath};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerOps {
    pub path: OpsPath,
    pub conv_math: ConvMath,
    pub conv_algorithms: ConvAlgorithms,
}

impl LayerOps {
    pub fn of(config: &BackboneConfig) -> Self {
        Self {
            path: config.ops,
            conv_math: config.conv_math,
            conv_algorithms: config.conv_algorithms,
        }
    }

    /// The convolutions' settings.
    pub fn conv(&self) -> ConvSettings {
        ConvSettings {
            math: self.conv_math,
            algorithms: self.conv_algorithms,
        }
    }

    /// A path in f32 arithmetic.
    pub fn f32(path: OpsPath) -> Self {
        Self {
            path,
            conv_math: ConvMath::F32,
            conv_algorithms: ConvAlgorithms::Deterministic,
        }
    }
}
