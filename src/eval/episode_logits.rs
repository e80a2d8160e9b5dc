//! Each frozen episode's query logits in evaluation mode, by one of two routes that give the same
//! numbers (bit for bit on the CPU; on CUDA equal up to rounding, as cuDNN and cuBLAS choose their
//! algorithms by batch size). Episode by episode: the episode's support and query images go through the backbone
//! together, then the head. By distinct images: in evaluation mode an image's features do not depend
//! on the rest of its batch (batch norm uses its running statistics; every other backbone layer works
//! image by image), and frozen test episodes draw the same images again and again (2,000 5-way
//! 15-query episodes draw 160,000–200,000 images from miniImageNet's 12,000 test images), so the
//! backbone runs once on each distinct image of a group of episodes and each episode's head reads its
//! images' rows. Groups are as large as [`FEATURE_BUDGET_BYTES`] of features allows. Every backbone
//! batch holds [`BACKBONE_BATCH`] images (the last one of a group padded with copies of its last
//! image), so on a GPU an episode's logits do not depend on which other episodes are evaluated with it.
//!
//! The distinct-image route needs the same pixels for an image wherever it appears, so it is taken
//! only for a transform that draws no randomness (the test transform, which evaluation uses).

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use candle_core::{Result, Tensor};

use crate::backbones::Features;
use crate::data::episode_tensors::{ordered_slots, EpisodeLoader};
use crate::data::frozen_episodes::SlotEpisode;
use crate::data::store::Store;
use crate::data::transforms::Transform;
use crate::model::episode_batch::load_episode;
use crate::model::few_shot::FewShotModel;

/// What receives each episode's logits: `(episode, logits (n_query_total, n_way), query labels)`.
pub type EpisodeVisitor<'a> = dyn FnMut(&SlotEpisode, Tensor, &[usize]) -> Result<()> + 'a;

/// The most feature bytes one group of episodes holds on the device at once (a full miniImageNet
/// test split's features from ResNet-12's default taps, 12,000 × 960 × 5 × 5 floats, take 1.15 GB).
pub const FEATURE_BUDGET_BYTES: usize = 2 << 30;

/// Images per backbone batch: a 5-way 5-shot 15-query episode's size, so the backbone's activations
/// are such an episode's (the group's features come on top).
pub const BACKBONE_BATCH: usize = 100;

/// Calls `visit(episode, logits, query labels)` for each episode in order, with its query logits
/// (n_query_total, n_way): by distinct images where `transform` draws no randomness, episode by
/// episode otherwise. `on_features(n)` reports each backbone batch of `n` distinct images.
pub fn episode_logits(
    model: &FewShotModel,
    store: &Store,
    episodes: &[SlotEpisode],
    transform: Transform,
    on_features: &mut dyn FnMut(usize),
    visit: &mut EpisodeVisitor,
) -> Result<()> {
    if transform.draws_randomness() {
        logits_episode_by_episode(model, store, episodes, transform, visit)
    } else {
        logits_by_distinct_images(
            model,
            store,
            episodes,
            transform,
            FEATURE_BUDGET_BYTES,
            on_features,
            visit,
        )
    }
}

/// The episode-by-episode route: support and query through the backbone together, as in training.
pub fn logits_episode_by_episode(
    model: &FewShotModel,
    store: &Store,
    episodes: &[SlotEpisode],
    transform: Transform,
    visit: &mut EpisodeVisitor,
) -> Result<()> {
    for episode in episodes {
        let batch = load_episode(store, episode, transform, 0, &model.device)?;
        let logits = model.episode(&batch.support, &batch.query, false)?.logits;
        visit(episode, logits, &batch.query_labels_host)?;
    }
    Ok(())
}

/// The distinct-image route with groups of at most `budget_bytes` of features (at least one
/// episode each). `transform` must draw no randomness.
pub fn logits_by_distinct_images(
    model: &FewShotModel,
    store: &Store,
    episodes: &[SlotEpisode],
    transform: Transform,
    budget_bytes: usize,
    on_features: &mut dyn FnMut(usize),
    visit: &mut EpisodeVisitor,
) -> Result<()> {
    if transform.draws_randomness() {
        candle_core::bail!(
            "evaluation by distinct images needs a transform that draws no randomness (an image's \
             pixels must not depend on its episode), not {transform:?}"
        );
    }
    let Some(first) = episodes.iter().flat_map(episode_slots).next() else {
        return Ok(()); // no episode holds an image
    };
    let loader = EpisodeLoader {
        store,
        transform,
        seed: 0,
    };
    // one image through the backbone says how large an image's features are
    let probe = backbone_features(model, &loader, &[first])?;
    let bytes_per_image = probe.maps.elem_count() * probe.maps.dtype().size_in_bytes();
    let capacity = (budget_bytes / bytes_per_image).max(1);
    for group in episode_groups(episodes, capacity) {
        let group = &episodes[group];
        let features = GroupFeatures::compute(model, &loader, group, on_features)?;
        for episode in group {
            let (support, _, query, query_labels) = ordered_slots(episode);
            let rows = features.episode(&support, &query)?;
            let logits = model.episode_head(&rows, support.len(), false)?.logits;
            visit(episode, logits, &query_labels)?;
        }
    }
    Ok(())
}

/// Consecutive runs of episodes whose distinct images number at most `capacity` (an episode with
/// more images than that forms a run of its own).
pub fn episode_groups(episodes: &[SlotEpisode], capacity: usize) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut distinct = BTreeSet::new();
    for (i, episode) in episodes.iter().enumerate() {
        let slots = episode_slots(episode);
        let new = slots.iter().filter(|s| !distinct.contains(*s)).count();
        if i > start && distinct.len() + new > capacity {
            groups.push(start..i);
            start = i;
            distinct.clear();
        }
        distinct.extend(slots);
    }
    if start < episodes.len() {
        groups.push(start..episodes.len());
    }
    groups
}

/// The store slots the episodes draw, each once, in increasing order.
pub fn distinct_slots(episodes: &[SlotEpisode]) -> Vec<usize> {
    episodes
        .iter()
        .flat_map(episode_slots)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn episode_slots(episode: &SlotEpisode) -> BTreeSet<usize> {
    episode
        .support
        .iter()
        .chain(&episode.query)
        .flatten()
        .copied()
        .collect()
}

/// `slots`' images through the backbone in evaluation mode, detached from the graph.
fn backbone_features(
    model: &FewShotModel,
    loader: &EpisodeLoader,
    slots: &[usize],
) -> Result<Features> {
    let side = loader.transform.output_size() as usize;
    let channels = loader.store.header.channels as usize;
    let images = Tensor::from_vec(
        loader.render(slots, 0),
        (slots.len(), channels, side, side),
        &model.device,
    )?;
    let features = model.features(&images, false)?;
    Ok(Features {
        maps: features.maps.detach(),
        channels: features.channels,
    })
}

/// The features of a group's distinct images, one row each, and where each image's row is.
struct GroupFeatures {
    /// (distinct images, Σ channels, pool, pool)
    maps: Tensor,
    channels: Vec<usize>,
    row_of: HashMap<usize, u32>,
}

impl GroupFeatures {
    fn compute(
        model: &FewShotModel,
        loader: &EpisodeLoader,
        group: &[SlotEpisode],
        on_features: &mut dyn FnMut(usize),
    ) -> Result<Self> {
        let distinct = distinct_slots(group);
        let mut maps: Option<Tensor> = None;
        let mut channels = Vec::new();
        for (b, batch) in distinct.chunks(BACKBONE_BATCH).enumerate() {
            let mut padded = batch.to_vec();
            padded.resize(BACKBONE_BATCH, *batch.last().expect("chunks are not empty"));
            let features = backbone_features(model, loader, &padded)?;
            let features = Features {
                maps: features.maps.narrow(0, 0, batch.len())?.contiguous()?,
                channels: features.channels,
            };
            let all = match &maps {
                Some(all) => all,
                None => {
                    let (_, c, h, w) = features.maps.dims4()?;
                    channels = features.channels.clone();
                    maps.insert(Tensor::zeros(
                        (distinct.len(), c, h, w),
                        features.maps.dtype(),
                        &model.device,
                    )?)
                }
            };
            all.slice_set(&features.maps, 0, b * BACKBONE_BATCH)?;
            on_features(batch.len());
        }
        Ok(Self {
            maps: maps.expect("a group holds at least one image"),
            channels,
            row_of: distinct
                .iter()
                .enumerate()
                .map(|(row, &slot)| (slot, row as u32))
                .collect(),
        })
    }

    /// One episode's features, support rows first (shot-major) then query rows, as the backbone
    /// gives them episode by episode.
    fn episode(&self, support: &[usize], query: &[usize]) -> Result<Features> {
        let rows: Vec<u32> = support
            .iter()
            .chain(query)
            .map(|s| self.row_of[s])
            .collect();
        let n = rows.len();
        let index = Tensor::from_vec(rows, n, self.maps.device())?;
        Ok(Features {
            maps: self.maps.index_select(&index, 0)?,
            channels: self.channels.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn episode(index: u64, support: &[usize], query: &[usize]) -> SlotEpisode {
        SlotEpisode {
            index,
            support: support.iter().map(|&s| vec![s]).collect(),
            query: query.iter().map(|&q| vec![q]).collect(),
        }
    }

    #[test]
    fn groups_hold_at_most_capacity_distinct_images_and_keep_the_order() {
        let episodes = [
            episode(0, &[1, 2], &[3, 4]),
            episode(1, &[1, 2], &[3, 5]), // one new image: 5 in all
            episode(2, &[6, 7], &[8, 9]), // four new: 9 > 6, a new group
            episode(3, &[6, 1], &[8, 2]), // two new: 6
            episode(4, &[10, 11], &[12, 13]),
        ];
        assert_eq!(episode_groups(&episodes, 6), vec![0..2, 2..4, 4..5]);
        assert_eq!(episode_groups(&episodes, 100), vec![0..5]);
        // an episode larger than the capacity still forms a group, of its own
        assert_eq!(
            episode_groups(&episodes, 1),
            vec![0..1, 1..2, 2..3, 3..4, 4..5]
        );
        assert!(episode_groups(&[], 4).is_empty());
    }
}
