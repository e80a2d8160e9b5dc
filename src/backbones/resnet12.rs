//! ResNet-12 as the few-shot literature uses it (Lee et al. 2019 MetaOptNet; Kang et al. 2021 RENet):
//! four residual blocks of widths 64-160-320-640, each three conv 3×3 + BN + LeakyReLU(0.1) with a
//! 1×1 conv + BN shortcut, then a 2×2 max-pool. Parameter names follow RENet's
//! (`layer{k}.0.conv1.weight`, `…bn1.*`, `…downsample.0.weight`, `…downsample.1.*`). No DropBlock.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::layers::{BatchNorm2d, Conv2d, LayerOps, LeakyRelu, MaxPool2d};

struct Block {
    convs: Vec<(Conv2d, BatchNorm2d)>,
    shortcut: (Conv2d, BatchNorm2d),
}

pub struct ResNet12 {
    blocks: Vec<Block>,
    /// LeakyReLU(0.1)
    activation: LeakyRelu,
    pool: MaxPool2d,
}

impl ResNet12 {
    pub fn new(vb: VarBuilder, in_channels: usize, ops: LayerOps) -> Result<Self> {
        let widths = [64, 160, 320, 640];
        let mut blocks = Vec::new();
        let mut input = in_channels;
        for (k, &w) in widths.iter().enumerate() {
            let vb = vb.pp(format!("layer{}", k + 1)).pp("0");
            let mut convs = Vec::new();
            for c in 1..=3 {
                let cin = if c == 1 { input } else { w };
                convs.push((
                    Conv2d::new(vb.pp(format!("conv{c}")), cin, w, 3, 1, 1, ops)?,
                    BatchNorm2d::new(vb.pp(format!("bn{c}")), w, ops)?,
                ));
            }
            let shortcut = (
                Conv2d::new(vb.pp("downsample.0"), input, w, 1, 1, 0, ops)?,
                BatchNorm2d::new(vb.pp("downsample.1"), w, ops)?,
            );
            blocks.push(Block { convs, shortcut });
            input = w;
        }
        Ok(Self {
            blocks,
            activation: LeakyRelu::new(0.1, ops),
            pool: MaxPool2d::new(2, 2, 0, ops),
        })
    }

    /// `[x, block1(x), …, block_last(…)]`
    pub fn blocks(&self, x: &Tensor, train: bool, last: usize) -> Result<Vec<Tensor>> {
        let mut outputs = vec![x.clone()];
        for block in self.blocks.iter().take(last) {
            let input = outputs.last().unwrap();
            let mut h = input.clone();
            for (i, (conv, bn)) in block.convs.iter().enumerate() {
                h = if i < 2 {
                    bn.forward_activated(&conv.forward(&h)?, train, &self.activation)?
                } else {
                    bn.forward(&conv.forward(&h)?, train)?
                };
            }
            let skip = block
                .shortcut
                .1
                .forward(&block.shortcut.0.forward(input)?, train)?;
            let h = self.activation.forward(&(h + skip)?)?;
            outputs.push(self.pool.forward(&h)?);
        }
        Ok(outputs)
    }
}
