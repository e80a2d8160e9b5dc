//! Backbones: Conv-4, ResNet-12 and torchvision's ResNet-18, each returning the feature maps of the
//! blocks ("taps") a head asks for, adaptive-average-pooled to one size and concatenated along
//! channels. Parameters are named as in the PyTorch references so their checkpoints load unchanged.

mod conv4;
mod resnet12;
mod resnet18;
mod torch_weights;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

pub use conv4::Conv4;
pub use resnet12::ResNet12;
pub use resnet18::ResNet18;
pub use torch_weights::load_torch_weights;

use crate::layers::{adaptive_avg_pool2d, OpsPath};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackboneKind {
    Conv4,
    Resnet12,
    Resnet18,
}

/// A backbone as data (serialised into every cell config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneConfig {
    pub kind: BackboneKind,
    /// Block outputs to return. Conv-4 and ResNet-12: blocks 1–4. ResNet-18: 0 = stem, 1–2 = layer1,
    /// 3–4 = layer2, 5–6 = layer3, 7–8 = layer4 (the authors' "hyperpixel" ids).
    pub taps: Vec<usize>,
    /// Each tap is adaptive-average-pooled to `pool`×`pool`, or to the smallest tap's size if that is
    /// smaller (Conv-4 on small images).
    pub pool: usize,
    pub in_channels: usize,
    #[serde(default)]
    pub ops: OpsPath,
}

impl BackboneConfig {
    /// The defaults: ResNet-18 layer4's two blocks at 3×3 (the authors'); ResNet-12 blocks 3 and 4 at
    /// 5×5; Conv-4 blocks 3 and 4 at 3×3 (or smaller).
    pub fn default_for(kind: BackboneKind, in_channels: usize) -> Self {
        let (taps, pool) = match kind {
            BackboneKind::Conv4 => (vec![3, 4], 3),
            BackboneKind::Resnet12 => (vec![3, 4], 5),
            BackboneKind::Resnet18 => (vec![7, 8], 3),
        };
        Self {
            kind,
            taps,
            pool,
            in_channels,
            ops: OpsPath::Stock,
        }
    }

    /// Channels of each block output, indexed by block id.
    pub fn block_channels(&self) -> Vec<usize> {
        match self.kind {
            BackboneKind::Conv4 => vec![self.in_channels, 64, 64, 64, 64],
            BackboneKind::Resnet12 => vec![self.in_channels, 64, 160, 320, 640],
            BackboneKind::Resnet18 => vec![64, 64, 64, 128, 128, 256, 256, 512, 512],
        }
    }

    /// Channels of each tap, in tap order.
    pub fn tap_channels(&self) -> Vec<usize> {
        let all = self.block_channels();
        self.taps.iter().map(|&t| all[t]).collect()
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        let blocks = self.block_channels().len();
        let first = if self.kind == BackboneKind::Resnet18 {
            0
        } else {
            1
        };
        if self.taps.is_empty() || self.taps.iter().any(|&t| t < first || t >= blocks) {
            return Err(format!(
                "taps {:?} must be block ids in {first}..{}",
                self.taps,
                blocks - 1
            ));
        }
        if self.pool == 0 {
            return Err("pool must be at least 1".into());
        }
        Ok(())
    }
}

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
            BackboneKind::Conv4 => Backbone::Conv4(Conv4::new(vb, config.in_channels, config.ops)?),
            BackboneKind::Resnet12 => {
                Backbone::ResNet12(ResNet12::new(vb, config.in_channels, config.ops)?)
            }
            BackboneKind::Resnet18 => {
                Backbone::ResNet18(ResNet18::new(vb, config.in_channels, config.ops)?)
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
