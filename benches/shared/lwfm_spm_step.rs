//! The LWFM-SPM training step that `examples/step_timing.rs` times against the authors' figures (issue
//! #6): the paper-protocol cell (`manifests/experiments/table1/paper-resnet18.toml`: ResNet-18,
//! layer4's two blocks pooled to 3×3, 84×84) from a seeded random initialisation, as the authors'
//! figures were measured; one 5-way episode of seeded images with 15 queries per class plus an
//! auxiliary base-class batch of 128, and the authors' loss: λ·CE(episode) + CE(fc(GAP(aux))) +
//! CE(fc(attended queries)), λ = 0.25 (miniImageNet's). Included by path (`#[path]`): measuring
//! scaffolding, not part of the library.

use candle_core::{Device, Tensor, Var, D};
use fewshot::layers::LayerOps;
use fewshot::manifest::cell::CellConfig;
use fewshot::model::few_shot::FewShotModel;

use super::protonet_step::{seeded, trainable_parameters};

/// Base classes of miniImageNet's training split, the `fc` layer's width.
const BASE_CLASSES: usize = 64;

/// One LWFM-SPM episode's model and data.
pub struct LwfmSpmStep {
    pub model: FewShotModel,
    support: Tensor,
    query: Tensor,
    labels: Tensor,
    /// each query's class among the base classes, for the absolute loss
    query_base_labels: Tensor,
    aux: Tensor,
    aux_labels: Tensor,
    episode_weight: f64,
}

impl LwfmSpmStep {
    /// The paper cell with `shots` per class and `ops`, on `device`.
    pub fn new(shots: usize, ops: LayerOps, device: &Device) -> Self {
        // compiled in: the binary also runs from a copy of the repository elsewhere (the GPU machine)
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/manifests/experiments/table1/paper-resnet18.toml"
        ));
        let mut cell = CellConfig::from_toml(text).unwrap();
        cell.backbone.ops = ops.path;
        cell.backbone.conv_math = ops.conv_math;
        cell.episode.n_shot = shots;
        cell.episode.n_query = 15;
        cell.train.aux_batch = 128;
        cell.train.episode_loss_weight = 0.25;
        let ways = cell.episode.n_way;
        let queries = ways * cell.episode.n_query;
        let labels = |n: usize, modulus: usize, stride: usize| {
            let v: Vec<u32> = (0..n).map(|i| ((i * stride) % modulus) as u32).collect();
            Tensor::from_vec(v, n, device).unwrap()
        };
        let on_device = |t: Tensor| t.to_device(device).unwrap();
        LwfmSpmStep {
            model: FewShotModel::new(&cell, BASE_CLASSES, device, None).unwrap(),
            support: on_device(seeded(&[ways * shots, 3, 84, 84], 13)),
            query: on_device(seeded(&[queries, 3, 84, 84], 14)),
            labels: labels(queries, ways, 1),
            // way w stands for base class 13·w mod 64
            query_base_labels: Tensor::from_vec(
                (0..queries)
                    .map(|i| ((i % ways) * 13 % BASE_CLASSES) as u32)
                    .collect::<Vec<_>>(),
                queries,
                device,
            )
            .unwrap(),
            aux: on_device(seeded(&[cell.train.aux_batch, 3, 84, 84], 15)),
            aux_labels: labels(cell.train.aux_batch, BASE_CLASSES, 29),
            episode_weight: cell.train.episode_loss_weight,
        }
    }

    /// The trainable parameters by name, sorted.
    pub fn parameters(&self) -> Vec<(String, Var)> {
        trainable_parameters(&self.model)
    }

    /// One test episode (evaluation mode, no auxiliary batch, no loss): the logits, calling `between`
    /// after the backbone and before the head, as the authors' per-test-episode figures were measured.
    pub fn evaluate_with(&self, between: &mut dyn FnMut()) -> Tensor {
        let m = &self.model;
        let all = Tensor::cat(&[&self.support, &self.query], 0).unwrap();
        let features = m.features(&all, false).unwrap();
        between();
        let n_support = self.support.dim(0).unwrap();
        m.episode_head(&features, n_support, false).unwrap().logits
    }

    /// The step's loss, calling `between` after the backbone (episode and auxiliary batch) and
    /// before the head and losses (LWFM-SPM's weighting, its host-side semantic-pixel matching, the
    /// three cross-entropies).
    pub fn loss_with(&self, between: &mut dyn FnMut()) -> Tensor {
        let m = &self.model;
        let n_support = self.support.dim(0).unwrap();
        let all = Tensor::cat(&[&self.support, &self.query], 0).unwrap();
        let features = m.features(&all, true).unwrap();
        let aux = m.features(&self.aux, true).unwrap();
        between();
        let out = m.episode_head(&features, n_support, true).unwrap();
        let ce = candle_nn::loss::cross_entropy;
        let episode = (ce(&out.logits, &self.labels).unwrap() * self.episode_weight).unwrap();
        let pooled = aux.maps.flatten_from(2).unwrap().mean(D::Minus1).unwrap();
        let aux_loss = ce(&m.classify(&pooled).unwrap(), &self.aux_labels).unwrap();
        let attended = out.attended_query.expect("LWFM-SPM attends its queries");
        let absolute = ce(&m.classify(&attended).unwrap(), &self.query_base_labels).unwrap();
        ((episode + aux_loss).unwrap() + absolute).unwrap()
    }
}
