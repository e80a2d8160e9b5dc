//! What a backbone's layers run: the ops path (candle's stock ops or the fast path's custom ops) and,
//! on the fast path, the convolutions' arithmetic — both from the cell's `[backbone]` table.

use crate::manifest::model::{BackboneConfig, ConvMath, OpsPath};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerOps {
    pub path: OpsPath,
    pub conv_math: ConvMath,
}

impl LayerOps {
    pub fn of(config: &BackboneConfig) -> Self {
        Self {
            path: config.ops,
            conv_math: config.conv_math,
        }
    }

    /// A path in f32 arithmetic.
    pub fn f32(path: OpsPath) -> Self {
        Self {
            path,
            conv_math: ConvMath::F32,
        }
    }
}
