//! Conv-4 (Vinyals et al. 2016; Snell et al. 2017): four blocks of conv 3×3 (64 filters, padding 1),
//! batch norm, ReLU and 2×2 max-pool. Parameters `block{k}.conv.weight`, `block{k}.bn.*`.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::layers::{BatchNorm2d, Conv2d, LayerOps, LeakyRelu, MaxPool2d};

pub struct Conv4 {
    blocks: Vec<(Conv2d, BatchNorm2d)>,
    relu: LeakyRelu,
    pool: MaxPool2d,
}

impl Conv4 {
    pub fn new(vb: VarBuilder, in_channels: usize, ops: LayerOps) -> Result<Self> {
        let mut blocks = Vec::new();
        for k in 1..=4 {
            let vb = vb.pp(format!("block{k}"));
            let input = if k == 1 { in_channels } else { 64 };
            blocks.push((
                Conv2d::new(vb.pp("conv"), input, 64, 3, 1, 1, ops)?,
                BatchNorm2d::new(vb.pp("bn"), 64, ops)?,
            ));
        }
        Ok(Self {
            blocks,
            relu: LeakyRelu::relu(ops),
            pool: MaxPool2d::new(2, 2, 0, ops),
        })
    }

    /// `[x, block1(x), …, block_last(…)]`
    pub fn blocks(&self, x: &Tensor, train: bool, last: usize) -> Result<Vec<Tensor>> {
        let mut outputs = vec![x.clone()];
        for (conv, bn) in self.blocks.iter().take(last) {
            let h =
                bn.forward_activated(&conv.forward(outputs.last().unwrap())?, train, &self.relu)?;
            outputs.push(self.pool.forward(&h)?);
        }
        Ok(outputs)
    }
}
