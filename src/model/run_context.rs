//! Where a cell's inputs and outputs are: its stores and frozen episode files (resolved through the
//! dataset manifest), and its output folder `runs/<cell-hash>/`.

use std::path::PathBuf;

use crate::data::episodes::{EpisodeSampler, EpisodeSpec, SplitIndex};
use crate::data::frozen_episodes::shuffle_support;
use crate::data::frozen_episodes::{
    frozen_dir, frozen_file_name, FrozenEpisodes, SlotEpisode, TEST_EPISODES, TEST_SEED,
    VAL_EPISODES, VAL_SEED,
};
use crate::data::prepare::{store_dir, store_file_name};
use crate::data::store::Store;
use crate::error::{Error, Result};
use crate::manifest::cell::CellConfig;
use crate::manifest::{load_dataset, DatasetManifest};
use crate::model::episode_batch::slots_of;
use crate::sabotage::{Sabotage, IMAGENET_MEAN, IMAGENET_STD};

/// The folders a run reads and writes.
#[derive(Debug, Clone)]
pub struct RunPaths {
    pub data_dir: PathBuf,
    pub manifests: PathBuf,
    pub runs: PathBuf,
}

impl RunPaths {
    pub fn run_dir(&self, cell: &CellConfig) -> PathBuf {
        self.runs.join(cell.hash())
    }

    /// The local file of the cell's pretrained backbone weights, if it has any; an error says how
    /// to fetch missing ones.
    pub fn backbone_weights(&self, cell: &CellConfig) -> Result<Option<PathBuf>> {
        let Some(name) = &cell.backbone_weights else {
            return Ok(None);
        };
        let manifest = crate::manifest::weights::load_weights(&self.manifests, name)?;
        let file = manifest.local_file(&self.data_dir);
        if !file.is_file() {
            return Err(Error::Store {
                path: file,
                dataset: format!("all --weights {name}"),
                message: "pretrained weights are missing".into(),
            });
        }
        Ok(Some(file))
    }
}

/// The stores and frozen episodes of one cell.
pub struct CellData {
    pub manifest: DatasetManifest,
    pub train: Store,
    pub val: Store,
    pub test: Store,
    pub val_episodes: Vec<SlotEpisode>,
    pub test_episodes: Vec<SlotEpisode>,
    /// Content hashes of the frozen files used.
    pub val_sha256: String,
    pub test_sha256: String,
}

impl CellData {
    pub fn open(cell: &CellConfig, paths: &RunPaths) -> Result<Self> {
        let manifest = load_dataset(&paths.manifests, &cell.dataset)?;
        let (variant, _) = manifest
            .split_lists(cell.split_variant.as_deref())
            .map_err(Error::invalid)?;
        let variant = variant.to_string();
        let dir = store_dir(&paths.data_dir, &manifest, &variant);
        let open = |split: &str| {
            Store::open(&dir.join(store_file_name(&manifest, split, cell.store_size)))
        };
        let (train, val, test) = (open("train")?, open("val")?, open("test")?);
        let spec = EpisodeSpec {
            n_way: cell.episode.n_way,
            n_shot: cell.episode.n_shot,
            n_query: cell.episode.n_query,
        };
        let frozen = frozen_dir(
            &paths.manifests,
            &manifest.name,
            &variant,
            &manifest.default_split,
        );
        let load = |split: &str,
                    seed: u64,
                    count: usize,
                    store: &Store|
         -> Result<(Vec<SlotEpisode>, String)> {
            let path = frozen.join(frozen_file_name(split, spec, seed, count));
            if !path.is_file() {
                return Err(Error::Episodes {
                    path: path.clone(),
                    message: format!(
                        "no frozen {split} episodes for {}; the protocol freezes 5-way 1/5-shot 15-query episodes: run `cargo xtask fetch-data --dataset {}`",
                        spec.tag(),
                        manifest.name
                    ),
                });
            }
            let f = FrozenEpisodes::read(&path)?;
            Ok((f.resolve(store, &path)?, f.content_sha256))
        };
        let (mut val_episodes, val_sha256) = load("val", VAL_SEED, VAL_EPISODES, &val)?;
        let (mut test_episodes, mut test_sha256) = load("test", TEST_SEED, TEST_EPISODES, &test)?;
        let (mut train, mut val, mut test) = (train, val, test);
        match cell.sabotage {
            None | Some(Sabotage::NoLwe) => {}
            Some(Sabotage::ShuffleSupportLabels) => {
                val_episodes.iter_mut().for_each(shuffle_support);
                test_episodes.iter_mut().for_each(shuffle_support);
            }
            Some(Sabotage::WrongNormalisation) => {
                for store in [&mut train, &mut val, &mut test] {
                    let h = &mut store.header;
                    h.normalization_mean.iter_mut().for_each(|m| *m += 0.5);
                    h.normalization_std.iter_mut().for_each(|s| *s *= 2.0);
                }
            }
            Some(Sabotage::TrainClassesInTest) => {
                // the test episodes' seeds and count, drawn from the training classes
                let index = SplitIndex::from_header(&train.header);
                let sampler = EpisodeSampler::new(&manifest.name, "test", spec, TEST_SEED, &index)?;
                test_episodes = (0..TEST_EPISODES as u64)
                    .map(|i| slots_of(&train, &sampler.episode(i)))
                    .collect();
                test = Store::open(&train.path)?;
                test_sha256 = "sabotaged: drawn from the training classes".into();
            }
            Some(Sabotage::ImagenetNormalisation) => {
                for store in [&mut train, &mut val, &mut test] {
                    let h = &mut store.header;
                    let c = h.normalization_mean.len();
                    h.normalization_mean = IMAGENET_MEAN[..c.min(3)].to_vec();
                    h.normalization_std = IMAGENET_STD[..c.min(3)].to_vec();
                }
            }
            Some(
                s @ (Sabotage::SwapRedBlue | Sabotage::CropOffByOne | Sabotage::DecoderOffByOne),
            ) => {
                for store in [&mut train, &mut val, &mut test] {
                    store.pixel_fault = s.pixel_fault();
                }
            }
        }
        Ok(Self {
            manifest,
            train,
            val,
            test,
            val_episodes,
            test_episodes,
            val_sha256,
            test_sha256,
        })
    }
}

impl CellData {
    /// The cell's model: seeded initialisation, then its pretrained backbone weights if it names any;
    /// the classifier covers this dataset's training classes.
    pub fn model(
        &self,
        cell: &CellConfig,
        paths: &RunPaths,
        device: &candle_core::Device,
    ) -> Result<super::few_shot::FewShotModel> {
        let weights = paths.backbone_weights(cell)?;
        super::few_shot::FewShotModel::new(
            cell,
            self.train.header.classes.len(),
            device,
            weights.as_deref(),
        )
    }
}
