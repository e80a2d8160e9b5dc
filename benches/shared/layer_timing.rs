//! Where a backbone's time goes, layer op by layer op: every distinct layer of the ProtoNet step's
//! backbone (Conv-4 or ResNet-12 on 100 images at 84×84, as `protonet_step.rs` runs it) built alone
//! from the suite's own layer types on one ops path, its forward and its backward timed apart on seeded
//! inputs (medians, the device synchronised around each), and weighted by how often the backbone
//! runs it. For issue #6's "where the time goes, per op"; `examples/step_timing.rs` runs it as the
//! steps `layers-conv4` and `layers-resnet12`. Included by path (`#[path]`): measuring scaffolding.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use fewshot::layers::{BatchNorm2d, Conv2d, LayerOps, LeakyRelu, MaxPool2d};
use fewshot::manifest::model::BackboneKind;

/// The kinds the per-kind sums are kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Conv,
    /// with the activation a batch norm applies (Conv-4's every ReLU, two of ResNet-12's three)
    BatchNorm,
    MaxPool,
    Activation,
}

impl OpKind {
    pub const ALL: [OpKind; 4] = [
        OpKind::Conv,
        OpKind::BatchNorm,
        OpKind::MaxPool,
        OpKind::Activation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Conv => "conv",
            OpKind::BatchNorm => "batch_norm",
            OpKind::MaxPool => "max_pool",
            OpKind::Activation => "activation",
        }
    }
}

/// One distinct layer of the backbone: what it is, its input, how often a step runs it.
#[derive(Debug, Clone)]
pub struct LayerUse {
    pub kind: OpKind,
    pub label: String,
    pub input: [usize; 4],
    pub count: usize,
    layer: Layer,
}

#[derive(Debug, Clone, Copy)]
enum Layer {
    /// (out channels, k, stride, padding)
    Conv(usize, usize, usize, usize),
    /// training mode, with the activation it applies (the slope), if any: the backbones' batch norm
    /// followed by its activation is one layer call (`BatchNorm2d::forward_activated`)
    BatchNorm(Option<f64>),
    /// (k, stride)
    MaxPool(usize, usize),
    /// slope (0: ReLU)
    LeakyRelu(f64),
}

/// A layer's timings in milliseconds (medians).
#[derive(Debug, Clone)]
pub struct LayerTiming {
    pub layer: LayerUse,
    pub forward_ms: f64,
    /// forward + backward + the loss's own share, less the forward and that share
    pub backward_ms: f64,
}

impl LayerTiming {
    /// Per step: count × (forward + backward).
    pub fn step_ms(&self) -> f64 {
        self.layer.count as f64 * (self.forward_ms + self.backward_ms)
    }
}

fn layer_use(kind: OpKind, layer: Layer, input: [usize; 4], count: usize) -> LayerUse {
    let [n, c, h, w] = input;
    let what = match layer {
        Layer::Conv(out, k, s, p) => format!("conv {k}x{k} s{s} p{p} ->{out}"),
        Layer::BatchNorm(None) => "batch norm train".to_string(),
        Layer::BatchNorm(Some(0.0)) => "batch norm train + relu".to_string(),
        Layer::BatchNorm(Some(slope)) => format!("batch norm train + leaky relu {slope}"),
        Layer::MaxPool(k, s) => format!("max pool {k}x{k} s{s}"),
        Layer::LeakyRelu(0.0) => "relu".to_string(),
        Layer::LeakyRelu(slope) => format!("leaky relu {slope}"),
    };
    LayerUse {
        kind,
        label: format!("{what} ({n},{c},{h},{w})"),
        input,
        count,
        layer,
    }
}

/// The distinct layers of `kind`'s backbone on `images` images of 3×`size`×`size`, with how often
/// one forward pass runs each (ResNet-12's residual additions are not layers here).
pub fn backbone_layers(kind: BackboneKind, images: usize, size: usize) -> Vec<LayerUse> {
    let mut out = Vec::new();
    let mut s = size;
    match kind {
        BackboneKind::Conv4 => {
            for block in 0..4 {
                let c_in = if block == 0 { 3 } else { 64 };
                let at = [images, 64, s, s];
                out.push(layer_use(
                    OpKind::Conv,
                    Layer::Conv(64, 3, 1, 1),
                    [images, c_in, s, s],
                    1,
                ));
                let bn_relu = Layer::BatchNorm(Some(0.0));
                out.push(layer_use(OpKind::BatchNorm, bn_relu, at, 1));
                out.push(layer_use(OpKind::MaxPool, Layer::MaxPool(2, 2), at, 1));
                s /= 2;
            }
        }
        BackboneKind::Resnet12 => {
            let mut c_in = 3;
            for width in [64, 160, 320, 640] {
                let at = [images, width, s, s];
                let conv = |c, k, p, count| {
                    layer_use(
                        OpKind::Conv,
                        Layer::Conv(width, k, 1, p),
                        [images, c, s, s],
                        count,
                    )
                };
                out.push(conv(c_in, 3, 1, 1));
                out.push(conv(width, 3, 1, 2));
                out.push(conv(c_in, 1, 0, 1));
                // bn1 and bn2 with their activation; bn3 and the shortcut's alone; the activation
                // after the residual addition alone
                let bn_leaky = Layer::BatchNorm(Some(0.1));
                out.push(layer_use(OpKind::BatchNorm, bn_leaky, at, 2));
                out.push(layer_use(OpKind::BatchNorm, Layer::BatchNorm(None), at, 2));
                out.push(layer_use(OpKind::Activation, Layer::LeakyRelu(0.1), at, 1));
                out.push(layer_use(OpKind::MaxPool, Layer::MaxPool(2, 2), at, 1));
                c_in = width;
                s /= 2;
            }
        }
        other => panic!("no layer list for {other:?}"),
    }
    out
}

/// Uniform in [−1, 1) on `device`, from the benches' seeded stream.
fn seeded_on(shape: &[usize], seed: u64, device: &Device) -> candle_core::Result<Tensor> {
    super::protonet_step::seeded(shape, seed).to_device(device)
}

/// A built layer's forward pass.
type Forward = dyn Fn(&Tensor) -> candle_core::Result<Tensor>;

/// Times one layer on `ops`: the forward alone, the forward with the backward of Σ r·y, and that
/// loss's own forward and backward on a variable shaped as y (subtracted), each `repeats` times
/// after `warm_up`.
pub fn time_layer(
    layer: &LayerUse,
    ops: LayerOps,
    device: &Device,
    repeats: usize,
    warm_up: usize,
) -> candle_core::Result<LayerTiming> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let c = layer.input[1];
    let forward: Box<Forward> = match layer.layer {
        Layer::Conv(out, k, s, p) => {
            let conv = Conv2d::new(vb.pp("conv"), c, out, k, s, p, ops)?;
            Box::new(move |x| conv.forward(x))
        }
        Layer::BatchNorm(None) => {
            let bn = BatchNorm2d::new(vb.pp("bn"), c, ops)?;
            Box::new(move |x| bn.forward(x, true))
        }
        Layer::BatchNorm(Some(slope)) => {
            let bn = BatchNorm2d::new(vb.pp("bn"), c, ops)?;
            let activation = LeakyRelu::new(slope, ops);
            Box::new(move |x| bn.forward_activated(x, true, &activation))
        }
        Layer::MaxPool(k, s) => {
            let pool = MaxPool2d::new(k, s, 0, ops);
            Box::new(move |x| pool.forward(x))
        }
        Layer::LeakyRelu(slope) => {
            let activation = LeakyRelu::new(slope, ops);
            Box::new(move |x| activation.forward(x))
        }
    };
    let x = Var::from_tensor(&seeded_on(&layer.input, 41, device)?)?;
    let y_shape = forward(&x)?.dims().to_vec();
    let r = seeded_on(&y_shape, 43, device)?;
    let z = Var::from_tensor(&seeded_on(&y_shape, 47, device)?)?;
    let timed = |run: &dyn Fn() -> candle_core::Result<()>| -> candle_core::Result<f64> {
        let mut seconds = Vec::with_capacity(repeats);
        for i in 0..warm_up + repeats {
            device.synchronize()?;
            let t0 = Instant::now();
            run()?;
            device.synchronize()?;
            if i >= warm_up {
                seconds.push(t0.elapsed().as_secs_f64());
            }
        }
        Ok(super::median_ms(seconds))
    };
    let forward_ms = timed(&|| forward(&x).map(drop))?;
    let both_ms = timed(&|| (forward(&x)? * &r)?.sum_all()?.backward().map(drop))?;
    let loss_ms = timed(&|| (z.as_tensor() * &r)?.sum_all()?.backward().map(drop))?;
    Ok(LayerTiming {
        layer: layer.clone(),
        forward_ms,
        backward_ms: (both_ms - forward_ms - loss_ms).max(0.0),
    })
}
