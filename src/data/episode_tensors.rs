//! Turning an episode into normalised `f32` NCHW buffers, ready to become tensors: the support set in
//! the authors' shot-major order (all classes' first shot, then all classes' second, …, so labels are
//! `0..n_way` repeated `n_shot` times) and the queries in the same label-cycling order.

use rayon::prelude::*;

use super::frozen_episodes::SlotEpisode;
use super::philox::CounterRng;
use super::store::Store;
use super::transforms::{apply, StoredImage, Transform};

/// One episode's images as flat NCHW buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeTensors {
    /// (n_way * n_shot, channels, size, size)
    pub support: Vec<f32>,
    pub support_labels: Vec<usize>,
    /// (n_way * n_query, channels, size, size)
    pub query: Vec<f32>,
    pub query_labels: Vec<usize>,
    /// [channels, size, size]
    pub image_shape: [usize; 3],
}

/// Loads episodes from one store with the store's normalisation constants.
pub struct EpisodeLoader<'a> {
    pub store: &'a Store,
    pub transform: Transform,
    /// Seed of the train augmentation; unused by the test transform.
    pub seed: u64,
}

impl EpisodeLoader<'_> {
    /// `episode.support[label][shot]` and `episode.query[label][q]` are store slots.
    pub fn load(&self, episode: &SlotEpisode) -> EpisodeTensors {
        let way = episode.support.len();
        let order = |sets: &Vec<Vec<usize>>| -> (Vec<usize>, Vec<usize>) {
            let per = sets.first().map(|s| s.len()).unwrap_or(0);
            (0..per)
                .flat_map(|k| (0..way).map(move |label| (sets[label][k], label)))
                .unzip()
        };
        let (support_slots, support_labels) = order(&episode.support);
        let (query_slots, query_labels) = order(&episode.query);
        let h = &self.store.header;
        let c = h.channels as usize;
        let size = self.transform.output_size() as usize;
        let per_image = c * size * size;
        let key = CounterRng::key_from(&format!(
            "fewshot-augment-v1|{}|{}|{}",
            h.dataset, h.split, self.seed
        ));
        let render = |slots: &[usize], stream_base: u64| -> Vec<f32> {
            let mut out = vec![0f32; slots.len() * per_image];
            out.par_chunks_mut(per_image)
                .zip(slots.par_iter().enumerate())
                .for_each(|(buf, (position, &slot))| {
                    let mut rng = CounterRng::new(key, stream_base + position as u64);
                    apply(
                        self.transform,
                        StoredImage {
                            pixels: self.store.pixels(slot),
                            side: h.width,
                            channels: h.channels,
                        },
                        &h.normalization_mean,
                        &h.normalization_std,
                        &mut rng,
                        buf,
                    );
                });
            out
        };
        // each image of each episode gets its own augmentation stream
        let base = episode.index << 16;
        EpisodeTensors {
            support: render(&support_slots, base),
            support_labels,
            query: render(&query_slots, base + (1 << 15)),
            query_labels,
            image_shape: [c, size, size],
        }
    }
}
