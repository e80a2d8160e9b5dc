//! The training step that `benches/heads_and_steps.rs` times on CPU, `examples/step_memory.rs`
//! measures for memory and `examples/step_timing.rs` times by phase on any device: the CI Conv-4
//! ProtoNet cell at 84×84 (its backbone swapped for another kind when asked), a 5-way episode of
//! seeded images, forward through the model and cross-entropy on the query labels. Included by path
//! (`#[path]`): it is measuring scaffolding, not part of the library.

use candle_core::{Device, Tensor, Var};
use fewshot::layers::{ConvAlgorithms, ConvMath, LayerOps, OpsPath};
use fewshot::manifest::cell::CellConfig;
use fewshot::manifest::model::{BackboneConfig, BackboneKind};
use fewshot::model::few_shot::FewShotModel;

/// The step's backbone from its command-line name.
#[allow(dead_code)] // the bench takes its backbones from a list
pub fn parse_backbone(name: &str) -> Result<BackboneKind, String> {
    match name {
        "conv4" => Ok(BackboneKind::Conv4),
        "resnet12" => Ok(BackboneKind::Resnet12),
        other => Err(format!("unknown backbone {other:?}")),
    }
}

/// The layers' ops from their command-line name: `stock`, `fast` (f32, deterministic cuDNN
/// algorithms), `fast-tf32` (the fast path with TF32 convolutions, as eager PyTorch convolves by
/// default on a GPU) or `fast-fastest` (f32, whatever algorithm cuDNN ranks first, deterministic or
/// not: what determinism costs).
#[allow(dead_code)] // the bench takes its paths from a list
pub fn parse_ops(name: &str) -> Result<LayerOps, String> {
    match name {
        "fast" => Ok(LayerOps::f32(OpsPath::Fast)),
        "stock" => Ok(LayerOps::f32(OpsPath::Stock)),
        "fast-tf32" => Ok(LayerOps {
            conv_math: ConvMath::Tf32,
            ..LayerOps::f32(OpsPath::Fast)
        }),
        "fast-fastest" => Ok(LayerOps {
            conv_algorithms: ConvAlgorithms::Fastest,
            ..LayerOps::f32(OpsPath::Fast)
        }),
        other => Err(format!(
            "unknown ops {other:?} (stock, fast, fast-tf32 or fast-fastest)"
        )),
    }
}

/// Uniform in [−1, 1), from the benches' seeded stream.
pub fn seeded(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = fewshot::data::philox::CounterRng::new(
        fewshot::data::philox::CounterRng::key_from("bench"),
        seed,
    );
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.unit_f32() * 2.0 - 1.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// One 5-way episode's model and data.
pub struct ProtonetStep {
    pub model: FewShotModel,
    pub support: Tensor,
    pub query: Tensor,
    pub labels: Tensor,
}

#[allow(dead_code)] // gradient_accuracy uses only the helpers
/// The CI Conv-4 ProtoNet cell at 84×84 with `kind` as its backbone (ProtoNet on the global average
/// of the last block) and `ops`.
pub fn protonet_cell(kind: BackboneKind, ops: LayerOps) -> CellConfig {
    // compiled in: the binary also runs from a copy of the repository elsewhere (the GPU machine)
    let text = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/cells/ci/mini-imagenet-conv4-protonet-5w5s.toml"
    ));
    let mut cell = CellConfig::from_toml(text).unwrap();
    cell.image_size = 84;
    cell.test_resize = 92;
    if kind != cell.backbone.kind {
        cell.backbone = BackboneConfig {
            taps: vec![4],
            pool: 1,
            ..BackboneConfig::default_for(kind, 3)
        };
    }
    cell.backbone.ops = ops.path;
    cell.backbone.conv_math = ops.conv_math;
    cell
}

impl ProtonetStep {
    #[allow(dead_code)] // gradient_accuracy uses only the helpers
    /// [`protonet_cell`] with `shots` + `queries` images per class, on `device`.
    pub fn new(
        kind: BackboneKind,
        ops: LayerOps,
        shots: usize,
        queries: usize,
        device: &Device,
    ) -> Self {
        let mut cell = protonet_cell(kind, ops);
        cell.episode.n_shot = shots;
        cell.episode.n_query = queries;
        let ways = cell.episode.n_way;
        ProtonetStep {
            model: FewShotModel::new(&cell, 64, device, None).unwrap(),
            support: seeded(&[ways * shots, 3, 84, 84], 3)
                .to_device(device)
                .unwrap(),
            query: seeded(&[ways * queries, 3, 84, 84], 4)
                .to_device(device)
                .unwrap(),
            labels: Tensor::from_vec(
                (0..(ways * queries) as u32)
                    .map(|i| i % ways as u32)
                    .collect::<Vec<_>>(),
                ways * queries,
                device,
            )
            .unwrap(),
        }
    }

    /// The trainable parameters by name, sorted.
    #[allow(dead_code)] // the memory example has no optimiser
    pub fn parameters(&self) -> Vec<(String, Var)> {
        trainable_parameters(&self.model)
    }

    /// The training-mode forward pass and the episode's loss.
    #[allow(dead_code)] // step_timing calls `loss_with`
    pub fn loss(&self) -> Tensor {
        self.loss_with(&mut || {})
    }

    /// The same, calling `between` after the backbone and before the head and the loss.
    pub fn loss_with(&self, between: &mut dyn FnMut()) -> Tensor {
        let n_support = self.support.dim(0).unwrap();
        let all = Tensor::cat(&[&self.support, &self.query], 0).unwrap();
        let features = self.model.features(&all, true).unwrap();
        between();
        let out = self.model.episode_head(&features, n_support, true).unwrap();
        candle_nn::loss::cross_entropy(&out.logits, &self.labels).unwrap()
    }
}

impl ProtonetStep {
    /// The episode's logits in evaluation mode (running statistics), as a test episode is
    /// evaluated, calling `between` after the backbone.
    #[allow(dead_code)] // only step_timing evaluates
    pub fn evaluate_with(&self, between: &mut dyn FnMut()) -> Tensor {
        let n_support = self.support.dim(0).unwrap();
        let all = Tensor::cat(&[&self.support, &self.query], 0).unwrap();
        let features = self.model.features(&all, false).unwrap();
        between();
        let out = self
            .model
            .episode_head(&features, n_support, false)
            .unwrap();
        out.logits
    }
}

/// A model's trainable parameters (batch-norm running statistics left out) by name, sorted.
#[allow(dead_code)] // the memory example has no optimiser
pub fn trainable_parameters(model: &FewShotModel) -> Vec<(String, Var)> {
    let mut params: Vec<_> = model
        .varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| !n.ends_with("running_mean") && !n.ends_with("running_var"))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    params
}
