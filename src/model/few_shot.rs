//! The few-shot model of one cell: backbone, metric head and the base-class classifier `fc`
//! (feature dim → number of training classes) that the auxiliary and "absolute" losses use.
//! Parameters live in one `VarMap` under `backbone.`, `head.` and `fc.`.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder, VarMap};

use std::path::Path;

use crate::backbones::{load_torch_weights, Backbone, Features};
use crate::heads::{build_head, EpisodeFeatures, Head, HeadOutput};
use crate::manifest::cell::CellConfig;

pub struct FewShotModel {
    pub config: CellConfig,
    pub varmap: VarMap,
    pub device: Device,
    backbone: Backbone,
    head: Box<dyn Head>,
    fc: Linear,
    /// Positions per channel `fc` reads ([`CellConfig::classifier_positions`], fixed at build).
    fc_positions: usize,
}

impl FewShotModel {
    /// Builds the model with parameters from `seed` (see [`super::init::seeded_init`]), then, if
    /// given, loads pretrained backbone weights (a PyTorch checkpoint with the backbone's names).
    pub fn new(
        config: &CellConfig,
        n_train_classes: usize,
        device: &Device,
        backbone_weights: Option<&Path>,
    ) -> crate::Result<Self> {
        if config.backbone.ops == crate::layers::OpsPath::Fast && !device.is_cpu() {
            // the CUDA kernels are checked against the stock ops where they run, once per device
            crate::model::fast_ops_check::verify(device)?;
        }
        let model = Self::build(config, n_train_classes, device)
            .map_err(|e| crate::Error::invalid(format!("building the model: {e}")))?;
        if let Some(path) = backbone_weights {
            load_torch_weights(&model.varmap, path, "backbone.")?;
        }
        Ok(model)
    }

    fn build(config: &CellConfig, n_train_classes: usize, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let backbone = Backbone::new(&config.backbone, vb.pp("backbone"))?;
        let channels = config.backbone.tap_channels();
        let uniform_lwe = config.sabotage == Some(crate::sabotage::Sabotage::NoLwe);
        let head = build_head(&config.head, &channels, vb.pp("head"), uniform_lwe)?;
        let fc_positions = config.classifier_positions();
        let fc_inputs = channels.iter().sum::<usize>() * fc_positions;
        let fc = candle_nn::linear(fc_inputs, n_train_classes, vb.pp("fc"))?;
        super::init::seeded_init(&varmap, config.seed)?;
        Ok(Self {
            config: config.clone(),
            varmap,
            device: device.clone(),
            backbone,
            head,
            fc,
            fc_positions,
        })
    }

    /// images: (batch, c, h, w) → pooled, concatenated tap features.
    pub fn features(&self, images: &Tensor, train: bool) -> Result<Features> {
        self.backbone.features(&self.config.backbone, images, train)
    }

    /// One episode through backbone and head. The support (shot-major) and query images go
    /// through the backbone together, as in the authors' code.
    pub fn episode(&self, support: &Tensor, query: &Tensor, train: bool) -> Result<HeadOutput> {
        let n_support = support.dim(0)?;
        let all = Tensor::cat(&[support, query], 0)?;
        let features = self.features(&all, train)?;
        self.episode_head(&features, n_support, train)
    }

    /// The head on one episode's backbone features: the first `n_support` rows are the support
    /// (shot-major), the rest the queries.
    pub fn episode_head(
        &self,
        features: &Features,
        n_support: usize,
        train: bool,
    ) -> Result<HeadOutput> {
        let fs = features.maps.narrow(0, 0, n_support)?;
        let fq = features
            .maps
            .narrow(0, n_support, features.maps.dim(0)? - n_support)?;
        self.head.forward(
            &EpisodeFeatures {
                support: &fs,
                query: &fq,
                channels: &features.channels,
                n_way: self.config.episode.n_way,
                n_shot: self.config.episode.n_shot,
            },
            train,
        )
    }

    /// How many positions of each channel the classifier reads (1: the global average).
    pub fn classifier_positions(&self) -> usize {
        self.fc_positions
    }

    /// Base-class logits of pooled features: x (batch, C) → (batch, n_train_classes).
    pub fn classify(&self, pooled: &Tensor) -> Result<Tensor> {
        self.fc.forward(pooled)
    }
}
