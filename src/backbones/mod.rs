//! Backbones: Conv-4, ResNet-12 and torchvision's ResNet-18, each returning the feature maps of the
//! blocks ("taps") a head asks for, adaptive-average-pooled to one size and concatenated along
//! channels. Parameters are named as in the PyTorch references so their checkpoints load unchanged.

mod conv4;
mod resnet12;
mod resnet18;
mod torch_weights;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

pub use conv4::Conv4;
pub use resnet12::ResNet12;
pub use resnet18::ResNet18;
pub use torch_weights::{load_mapped_torch_weights, load_torch_weights};

use crate::layers::{adaptive_avg_pool2d, LayerOps};
pub use crate::manifest::model::{BackboneConfig, BackboneKind};

/// Pooled, concatenated tap features of a batch.
#[derive(Debug, Clone)]
pub struct Features {
    /// (batch, Σ channels, pool, pool)
    pub maps: Tensor,
    /// Channels of each tap, in order.
    pub channels: Vec<usize>,
}

/// A built backbone.
pub enum Backbone {
    Conv4(Conv4),
    ResNet12(ResNet12),
    ResNet18(ResNet18),
}

impl Backbone {
    /// Creates (or, with a loaded VarBuilder, reads) the parameters under `vb`.
    pub fn new(config: &BackboneConfig, vb: VarBuilder) -> Result<Self> {
        config.validate().map_err(candle_core::Error::msg)?;
        Ok(match config.kind {
            BackboneKind::Conv4 => {
                Backbone::Conv4(Conv4::new(vb, config.in_channels, LayerOps::of(config))?)
            }
            BackboneKind::Resnet12 => {
                Backbone::ResNet12(ResNet12::new(vb, config.in_channels, LayerOps::of(config))?)
            }
            BackboneKind::Resnet18 => {
                Backbone::ResNet18(ResNet18::new(vb, config.in_channels, LayerOps::of(config))?)
            }
        })
    }

    /// Outputs of blocks 0..=last (block 0 is the input for Conv-4/ResNet-12, the stem for ResNet-18).
    fn blocks(&self, x: &Tensor, train: bool, last: usize) -> Result<Vec<Tensor>> {
        match self {
            Backbone::Conv4(m) => m.blocks(x, train, last),
            Backbone::ResNet12(m) => m.blocks(x, train, last),
            Backbone::ResNet18(m) => m.blocks(x, train, last),
        }
    }

    /// x: (batch, in_channels, h, w) → the configured taps, pooled and concatenated.
    pub fn features(&self, config: &BackboneConfig, x: &Tensor, train: bool) -> Result<Features> {
        let last = *config.taps.iter().max().expect("validated");
        let outputs = self.blocks(x, train, last)?;
        let smallest = config
            .taps
            .iter()
            .map(|&t| outputs[t].dim(2).unwrap_or(1))
            .min()
            .unwrap_or(1);
        let side = config.pool.min(smallest);
        let pooled = config
            .taps
            .iter()
            .map(|&t| adaptive_avg_pool2d(&outputs[t], side))
            .collect::<Result<Vec<_>>>()?;
        Ok(Features {
            maps: Tensor::cat(&pooled, 1)?,
            channels: config.tap_channels(),
        })
    }
}
