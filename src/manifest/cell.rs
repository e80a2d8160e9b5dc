//! A cell: the fully resolved configuration of one training + evaluation run (method × backbone ×
//! dataset × shot × seed), as a TOML file. Its hash (SHA-256 of the canonical JSON plus the method's
//! `numerics_version`) names its output folder `runs/<cell-hash>/`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::model::{BackboneConfig, BackboneKind, HeadConfig, OpsPath};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellConfig {
    pub dataset: String,
    /// The split variant (None = the manifest's default).
    pub split_variant: Option<String>,
    /// Which store resolution to read (the manifest's main size or one of its extra sizes).
    pub store_size: u32,
    /// Network input side; test images are resized to `test_resize` and centre-cropped to it.
    pub image_size: u32,
    pub test_resize: u32,
    /// Seed of every sampler, augmentation and initialisation of the run.
    pub seed: u64,
    pub episode: EpisodeConfig,
    pub backbone: BackboneConfig,
    /// Pretrained backbone weights (a `manifests/weights/` name, e.g. `resnet18-imagenet`) loaded
    /// after the seeded initialisation; None trains from scratch.
    pub backbone_weights: Option<String>,
    pub head: HeadConfig,
    pub train: TrainConfig,
    pub eval: EvalConfig,
    /// A deliberate fault for testing the CI gate (never in a real experiment); absent from the
    /// canonical JSON when unset, so honest cells keep their hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sabotage: Option<crate::sabotage::Sabotage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpisodeConfig {
    pub n_way: usize,
    pub n_shot: usize,
    pub n_query: usize,
}

/// Bumped when the pixels a transform gives change (`data::transforms`, `data::pillow_resize`); part of every cell's hash, so cached cells are
/// recomputed. 2 (2026-12-04, #27): Pillow's BILINEAR bit for bit (was `image`'s triangle filter).
pub const PIXELS_VERSION: u32 = 2;

/// The training recipe (METHOD.md §5–6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub episodes_per_epoch: usize,
    pub lr: f64,
    /// Epochs after which the learning rate is multiplied by `gamma` (MultiStepLR).
    pub milestones: Vec<usize>,
    pub gamma: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 = none).
    pub grad_clip: f64,
    /// λ: weight of the episodic cross-entropy.
    pub episode_loss_weight: f64,
    /// Images in the auxiliary base-class batch (0 = no auxiliary loss).
    pub aux_batch: usize,
    /// LWFM-SPM's "absolute" loss on the attended query features (ignored by other heads).
    pub absolute_loss: bool,
    /// `random-resized-crop` (the protocol: RandomResizedCrop + flip), `pad-crop` (RandomCrop with 8
    /// pixels of zero padding + flip) or `test` (the test transform).
    pub augment: String,
    /// Frozen validation episodes used for model selection after each epoch (0 = keep the last).
    pub val_episodes: usize,
    /// A plain base-class pre-training stage before the episodic one (the controlled protocol's
    /// ResNet-12); None starts episodic training directly (the authors' recipe).
    pub pretrain: Option<PretrainConfig>,
}

/// Base-class pre-training: cross-entropy of `fc(backbone(x))` over the training classes on
/// batches drawn from the whole train store, with the same SGD settings as the episodic stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    pub epochs: usize,
    pub batches_per_epoch: usize,
    pub batch: usize,
    pub lr: f64,
    pub milestones: Vec<usize>,
    pub gamma: f64,
    /// What the classifier reads of the last block: its global average (1, the default: ResNet
    /// recipes) or its map average-pooled to `classifier_pool`² positions and flattened (5 at 84×84
    /// for Conv-4: the whole 5×5 map, 1,600 inputs, as SimpleShot's and Chen et al.'s Conv-4
    /// classifiers). Left out of the serialised config at 1, so older hashes stand.
    #[serde(default = "global_average", skip_serializing_if = "is_global_average")]
    pub classifier_pool: usize,
}

fn global_average() -> usize {
    1
}

fn is_global_average(pool: &usize) -> bool {
    *pool == 1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// How many of the frozen test episodes to evaluate (the first n).
    pub test_episodes: usize,
}

/// 2 (2026-12-05): the pre-training stage is a node of its own shared by the cells that differ only
/// in head, shot, taps or episodic schedule ([`CellConfig::pretrain_node`]); its classifier reads the
/// last block's global average, and the episodic stage starts its own `fc` from the seed.
pub const PRETRAIN_NODE_VERSION: u32 = 2;

/// Bumped when a method's computation changes, so finished cells are recomputed.
/// 2 (2026-11-29): max pooling's gradient fixed on both paths (candle's own was wrong), which changes
/// every Conv-4 and ResNet-12 training run of every head.
/// 3 (2026-11-29): the fast path's ReLU (Conv-4, ResNet-18) is one op whose gradient at exactly 0 is 0,
/// as PyTorch's (candle's `relu` passes it whole), which moves their fast-path training runs slightly;
/// stock-path cells and ResNet-12 (whose leaky ReLU was already that op) stay at 2.
/// 4 (2026-12-03): the LWFM-SPM head computes its prototypes and SPM without the dense
/// (query × support × channel × position) tensors; equal in exact arithmetic, rounded differently,
/// so every LWFM-SPM cell (any backbone, either path) is recomputed.
///
/// A cell's version is that of the newest change that touched it.
pub fn numerics_version(head: &HeadConfig, backbone: &BackboneConfig) -> u32 {
    let fast_relu = backbone.ops == OpsPath::Fast && backbone.kind != BackboneKind::Resnet12;
    match head {
        HeadConfig::LwfmSpm { .. } => 4,
        HeadConfig::Protonet { .. } | HeadConfig::Cosine { .. } | HeadConfig::Deepemd { .. }
            if fast_relu =>
        {
            3
        }
        HeadConfig::Protonet { .. } | HeadConfig::Cosine { .. } | HeadConfig::Deepemd { .. } => 2,
    }
}

impl CellConfig {
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let cell: CellConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        cell.validate()?;
        Ok(cell)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.backbone.validate()?;
        let e = &self.episode;
        if e.n_way < 2 || e.n_shot == 0 || e.n_query == 0 {
            return Err("episode needs n_way >= 2, n_shot >= 1, n_query >= 1".into());
        }
        if self.test_resize < self.image_size {
            return Err("test_resize must be at least image_size".into());
        }
        if !["random-resized-crop", "pad-crop", "test"].contains(&self.train.augment.as_str()) {
            return Err(format!(
                "train.augment {:?} must be random-resized-crop, pad-crop or test",
                self.train.augment
            ));
        }
        if let Some(p) = &self.train.pretrain {
            if p.batch == 0 || p.milestones.windows(2).any(|w| w[0] >= w[1]) {
                return Err("train.pretrain needs batch >= 1 and increasing milestones".into());
            }
            if p.classifier_pool == 0 {
                return Err(
                    "train.pretrain.classifier_pool must be at least 1 (1: the global average)"
                        .into(),
                );
            }
        }
        if self.train.milestones.windows(2).any(|w| w[0] >= w[1]) {
            return Err("train.milestones must increase".into());
        }
        self.head.validate(self.backbone.pool)?;
        Ok(())
    }

    /// 16 hex digits of SHA-256 over the canonical JSON and the numerics version (and, for a cell
    /// with a pre-training stage, [`PRETRAIN_NODE_VERSION`]).
    pub fn hash(&self) -> String {
        let json = serde_json::to_string(self).expect("plain struct");
        let version = numerics_version(&self.head, &self.backbone);
        let pixels = PIXELS_VERSION;
        let mut text = format!("{json}|numerics-v{version}|pixels-v{pixels}");
        if self.train.pretrain.is_some() {
            text += &format!("|pretrain-node-v{PRETRAIN_NODE_VERSION}");
        }
        hex::encode(&Sha256::digest(text.as_bytes())[..8])
    }

    /// The shared base-class pre-training this cell starts from, as a cell of its own (a plan node
    /// cached by its hash): everything that shapes the pre-trained backbone — data, seed, backbone
    /// kind and ops, weights, the `train.pretrain` recipe, the optimiser's settings and the
    /// augmentation — and nothing that does not (head, shot, taps, the episodic schedule, the test
    /// transform), so the heads and shots of one backbone share one pre-training. Its classifier
    /// `fc` reads the backbone's last block pooled to `classifier_pool` (1: the global average, as the
    /// published ResNet recipes; Conv-4's flatten the 5×5 map); the episodic cell takes
    /// `backbone.*` from it and starts its own `fc` from the seed. The node
    /// is its own node; None for a cell without `train.pretrain`.
    pub fn pretrain_node(&self) -> Option<CellConfig> {
        let pretrain = self.train.pretrain.clone()?;
        let t = &self.train;
        Some(CellConfig {
            dataset: self.dataset.clone(),
            split_variant: self.split_variant.clone(),
            store_size: self.store_size,
            image_size: self.image_size,
            // the node never evaluates, and trains on the test transform only with `augment =
            // "test"`: otherwise the test transform is not part of it (checked: two pad-crop nodes
            // that differ only in it train byte-identical weights and momentum) and is the identity,
            // so that a profile's test transform can change without pre-training again
            test_resize: if t.augment == "test" {
                self.test_resize
            } else {
                self.image_size
            },
            seed: self.seed,
            // unused by the pre-training; fixed so that every shot names the same node
            episode: EpisodeConfig {
                n_way: 5,
                n_shot: 1,
                n_query: 15,
            },
            backbone: BackboneConfig {
                taps: vec![self.backbone.block_channels().len() - 1],
                pool: pretrain.classifier_pool,
                ..self.backbone.clone()
            },
            backbone_weights: self.backbone_weights.clone(),
            head: HeadConfig::Protonet {
                temperature: 1.0,
                flatten: false,
            },
            train: TrainConfig {
                epochs: 0,
                episodes_per_epoch: 0,
                lr: 0.0,
                milestones: Vec::new(),
                gamma: 1.0,
                momentum: t.momentum,
                nesterov: t.nesterov,
                weight_decay: t.weight_decay,
                grad_clip: t.grad_clip,
                episode_loss_weight: 0.0,
                aux_batch: 0,
                absolute_loss: false,
                augment: t.augment.clone(),
                val_episodes: 0,
                pretrain: Some(pretrain),
            },
            eval: EvalConfig { test_episodes: 0 },
            sabotage: self.sabotage,
        })
    }

    /// Whether this cell is a pre-training node (see [`Self::pretrain_node`]).
    pub fn is_pretrain_node(&self) -> bool {
        // a node's folder written before its test transform became the identity (d0f3750) holds
        // its cells' test_resize: still a node (it resumes in its own folder, under its old hash)
        self.pretrain_node().is_some_and(|node| {
            node == CellConfig {
                test_resize: node.test_resize,
                ..self.clone()
            }
        })
    }

    /// How many positions of each channel the classifier `fc` reads: a pre-training node's
    /// `classifier_pool`², else 1 (the episodic stage's auxiliary losses read the global average).
    pub fn classifier_positions(&self) -> usize {
        match &self.train.pretrain {
            Some(p) if self.is_pretrain_node() => p.classifier_pool * p.classifier_pool,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The classifier of a pre-training node reads its map pooled to `classifier_pool`: left out of
    /// the serialised config at 1 (the hashes of nodes and cells written before it stand), the
    /// node's backbone pooled to it, `fc` reading pool² positions in the node and 1 in its cells;
    /// the node's test transform the identity whatever its cells' (but for `augment = "test"`).
    #[test]
    fn a_flattened_pretraining_classifier_is_its_own_node_and_leaves_older_hashes_alone() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/manifests/cells/ci/omniglot-conv4-protonet-5w1s.toml"
        ))
        .unwrap();
        let with = |extra: &str| {
            let pretrain = format!(
                "[train.pretrain]\nepochs = 2\nbatches_per_epoch = 3\nbatch = 8\nlr = 0.1\nmilestones = [1]\ngamma = 0.1\n{extra}"
            );
            CellConfig::from_toml(&format!("{text}\n{pretrain}"))
        };
        let pooled = with("").unwrap();
        assert_eq!(pooled, with("classifier_pool = 1\n").unwrap());
        assert!(!serde_json::to_string(&pooled)
            .unwrap()
            .contains("classifier_pool"));
        let node = pooled.pretrain_node().unwrap();
        assert_eq!((node.backbone.pool, node.classifier_positions()), (1, 1));
        // the test transform is not the node's (this CI cell trains on it, `augment = "test"`,
        // so take pad-crop): cells that differ in it share one pre-training
        let mut padcrop = pooled.clone();
        padcrop.train.augment = "pad-crop".into();
        let padcrop_node = padcrop.pretrain_node().unwrap();
        let mut zoomed = padcrop.clone();
        zoomed.test_resize = padcrop.image_size + 4;
        assert_ne!(zoomed.hash(), padcrop.hash());
        assert_eq!(zoomed.pretrain_node().unwrap().hash(), padcrop_node.hash());
        assert_eq!(padcrop_node.test_resize, padcrop_node.image_size);
        assert!(padcrop_node.is_pretrain_node());
        let mut old_node = padcrop_node.clone();
        old_node.test_resize = padcrop_node.image_size + 8;
        assert!(old_node.is_pretrain_node(), "a node folder written before");
        assert!(!padcrop.is_pretrain_node() && !zoomed.is_pretrain_node());
        // … unless the node trains on the test transform
        assert_eq!(pooled.train.augment, "test");
        let mut plain = pooled.clone();
        plain.test_resize = pooled.image_size + 4;
        assert_eq!(
            plain.pretrain_node().unwrap().test_resize,
            plain.test_resize
        );
        assert_ne!(plain.pretrain_node().unwrap().hash(), node.hash());
        let flat = with("classifier_pool = 5\n").unwrap();
        let flat_node = flat.pretrain_node().unwrap();
        assert_ne!(flat_node.hash(), node.hash());
        assert_eq!(flat_node.backbone.pool, 5);
        assert_eq!(
            (
                flat_node.classifier_positions(),
                flat.classifier_positions()
            ),
            (25, 1)
        );
        assert!(with("classifier_pool = 0\n")
            .unwrap_err()
            .contains("classifier_pool must be at least 1"));
    }

    /// Version 3 (the fast path's one-op ReLU) for fast-path Conv-4 and ResNet-18 only, 4 for every
    /// LWFM-SPM cell: the other cells keep their hashes.
    #[test]
    fn the_numerics_version_follows_the_layers_that_changed() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/manifests/cells/ci/omniglot-conv4-protonet-5w1s.toml"
        ))
        .unwrap();
        let fast = CellConfig::from_toml(&text).unwrap();
        assert_eq!(fast.backbone.ops, OpsPath::Fast);
        assert_eq!(numerics_version(&fast.head, &fast.backbone), 3);
        let mut stock = fast.clone();
        stock.backbone.ops = OpsPath::Stock;
        assert_eq!(numerics_version(&stock.head, &stock.backbone), 2);
        let mut resnet12 = fast.clone();
        resnet12.backbone.kind = BackboneKind::Resnet12;
        assert_eq!(numerics_version(&resnet12.head, &resnet12.backbone), 2);
        let mut resnet18 = fast.clone();
        resnet18.backbone.kind = BackboneKind::Resnet18;
        assert_eq!(numerics_version(&resnet18.head, &resnet18.backbone), 3);
        assert_ne!(fast.hash(), stock.hash());
        // every LWFM-SPM cell moved to 4 with its head's formulation
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/manifests/cells/ci/omniglot-conv4-lwfm-spm-5w1s.toml"
        ))
        .unwrap();
        let lwfm = CellConfig::from_toml(&text).unwrap();
        assert_eq!(numerics_version(&lwfm.head, &lwfm.backbone), 4);
        let mut lwfm_stock_resnet12 = lwfm.clone();
        lwfm_stock_resnet12.backbone.ops = OpsPath::Stock;
        lwfm_stock_resnet12.backbone.kind = BackboneKind::Resnet12;
        assert_eq!(
            numerics_version(&lwfm_stock_resnet12.head, &lwfm_stock_resnet12.backbone),
            4
        );
    }
}
