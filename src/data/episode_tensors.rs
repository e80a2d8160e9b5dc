//! Turning an episode into normalised `f32` NCHW buffers, ready to become tensors: the support set in
//! the authors' shot-major order (all classes' first shot, then all classes' second, …, so labels are
//! `0..n_way` repeated `n_shot` times) and the queries in the same label-cycling order.

use rayon::prelude::*;

use super::frozen_episodes::SlotEpisode;
use super::philox::CounterRng;
use super::store::Store;
use super::transforms::{apply, Transform};

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

/// An episode's support and query slots in the order the model sees them, with their episode labels:
/// (support slots, support labels, query slots, query labels). `episode.support[label][shot]` and
/// `episode.query[label][q]` are store slots.
pub fn ordered_slots(episode: &SlotEpisode) -> (Vec<usize>, Vec<usize>, Vec<usize>, Vec<usize>) {
    let way = episode.support.len();
    let order = |sets: &Vec<Vec<usize>>| -> (Vec<usize>, Vec<usize>) {
        let per = sets.first().map(|s| s.len()).unwrap_or(0);
        (0..per)
            .flat_map(|k| (0..way).map(move |label| (sets[label][k], label)))
            .unzip()
    };
    let (support_slots, support_labels) = order(&episode.support);
    let (query_slots, query_labels) = order(&episode.query);
    (support_slots, support_labels, query_slots, query_labels)
}

impl EpisodeLoader<'_> {
    /// Floats per image after the transform.
    pub fn image_len(&self) -> usize {
        let size = self.transform.output_size() as usize;
        self.store.header.channels as usize * size * size
    }

    /// The images of `slots`, transformed, as one NCHW buffer; the image at position `k` draws its
    /// augmentation from stream `stream_base + k` (the test transform draws nothing).
    pub fn render(&self, slots: &[usize], stream_base: u64) -> Vec<f32> {
        let h = &self.store.header;
        let per_image = self.image_len();
        let key = CounterRng::key_from(&format!(
            "fewshot-augment-v1|{}|{}|{}",
            h.dataset, h.split, self.seed
        ));
        let mut out = vec![0f32; slots.len() * per_image];
        out.par_chunks_mut(per_image)
            .zip(slots.par_iter().enumerate())
            .for_each(|(buf, (position, &slot))| {
                let mut rng = CounterRng::new(key, stream_base + position as u64);
                apply(
                    self.transform,
                    self.store.image(slot),
                    &h.normalization_mean,
                    &h.normalization_std,
                    &mut rng,
                    buf,
                );
            });
        out
    }

    /// One episode's images and labels.
    pub fn load(&self, episode: &SlotEpisode) -> EpisodeTensors {
        let (support_slots, support_labels, query_slots, query_labels) = ordered_slots(episode);
        let size = self.transform.output_size() as usize;
        // each image of each episode gets its own augmentation stream
        let base = episode.index << 16;
        EpisodeTensors {
            support: self.render(&support_slots, base),
            support_labels,
            query: self.render(&query_slots, base + (1 << 15)),
            query_labels,
            image_shape: [self.store.header.channels as usize, size, size],
        }
    }
}
