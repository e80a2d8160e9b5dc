//! ResNet-18 with torchvision's layout and parameter names (`conv1`, `bn1`, `layer{1-4}.{0,1}.conv1`,
//! `…bn1`, `…conv2`, `…bn2`, `…downsample.{0,1}`), so torchvision's ImageNet checkpoint
//! (`resnet18-f37072fd.pth`) loads unchanged; `fc` is not built (the authors drop it). Stem: conv 7×7
//! stride 2 padding 3, BN, ReLU, max-pool 3×3 stride 2 padding 1. Block ids as the LWFM-SPM code
//! numbers them: 0 = stem, 1–2 = layer1, …, 7–8 = layer4.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::layers::{BatchNorm2d, Conv2d, LayerOps, LeakyRelu, MaxPool2d};

struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    downsample: Option<(Conv2d, BatchNorm2d)>,
    relu: LeakyRelu,
}

impl BasicBlock {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self
            .bn1
            .forward_activated(&self.conv1.forward(x)?, train, &self.relu)?;
        let h = self.bn2.forward(&self.conv2.forward(&h)?, train)?;
        let skip = match &self.downsample {
            Some((conv, bn)) => bn.forward(&conv.forward(x)?, train)?,
            None => x.clone(),
        };
        self.relu.forward(&(h + skip)?)
    }
}

pub struct ResNet18 {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    relu: LeakyRelu,
    pool: MaxPool2d,
    blocks: Vec<BasicBlock>,
}

impl ResNet18 {
    pub fn new(vb: VarBuilder, in_channels: usize, ops: LayerOps) -> Result<Self> {
        let conv1 = Conv2d::new(vb.pp("conv1"), in_channels, 64, 7, 2, 3, ops)?;
        let bn1 = BatchNorm2d::new(vb.pp("bn1"), 64, ops)?;
        let mut blocks = Vec::new();
        let mut input = 64;
        for (layer, (&width, &stride)) in [64, 128, 256, 512].iter().zip(&[1, 2, 2, 2]).enumerate()
        {
            for b in 0..2 {
                let vb = vb.pp(format!("layer{}.{b}", layer + 1));
                let s = if b == 0 { stride } else { 1 };
                let downsample = if b == 0 && (s != 1 || input != width) {
                    Some((
                        Conv2d::new(vb.pp("downsample.0"), input, width, 1, s, 0, ops)?,
                        BatchNorm2d::new(vb.pp("downsample.1"), width, ops)?,
                    ))
                } else {
                    None
                };
                blocks.push(BasicBlock {
                    conv1: Conv2d::new(vb.pp("conv1"), input, width, 3, s, 1, ops)?,
                    bn1: BatchNorm2d::new(vb.pp("bn1"), width, ops)?,
                    conv2: Conv2d::new(vb.pp("conv2"), width, width, 3, 1, 1, ops)?,
                    bn2: BatchNorm2d::new(vb.pp("bn2"), width, ops)?,
                    downsample,
                    relu: LeakyRelu::relu(ops),
                });
                input = width;
            }
        }
        Ok(Self {
            conv1,
            bn1,
            relu: LeakyRelu::relu(ops),
            pool: MaxPool2d::new(3, 2, 1, ops),
            blocks,
        })
    }

    /// `[stem(x), block1, …, block_last]`
    pub fn blocks(&self, x: &Tensor, train: bool, last: usize) -> Result<Vec<Tensor>> {
        let stem = self
            .bn1
            .forward_activated(&self.conv1.forward(x)?, train, &self.relu)?;
        let mut outputs = vec![self.pool.forward(&stem)?];
        for block in self.blocks.iter().take(last) {
            let next = block.forward(outputs.last().unwrap(), train)?;
            outputs.push(next);
        }
        Ok(outputs)
    }
}
