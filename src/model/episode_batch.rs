//! From stores to tensors for one training step or evaluation episode: episodes drawn by name are
//! resolved to slots, loaded with the cell's transform, and moved to the device; auxiliary
//! base-class batches are drawn from the train store with a seeded stream.

use candle_core::{Device, Result, Tensor};

use crate::data::episode_tensors::{EpisodeLoader, EpisodeTensors};
use crate::data::episodes::Episode;
use crate::data::frozen_episodes::SlotEpisode;
use crate::data::philox::CounterRng;
use crate::data::store::Store;
use crate::data::transforms::{apply, Transform};
use crate::manifest::cell::CellConfig;

/// One episode on the device.
pub struct EpisodeBatch {
    /// (n_way * n_shot, c, s, s), shot-major
    pub support: Tensor,
    /// (n_way * n_query, c, s, s)
    pub query: Tensor,
    /// (n_way * n_query,) u32 episode labels
    pub query_labels: Tensor,
    pub query_labels_host: Vec<usize>,
}

/// The cell's test transform and its training transform.
pub fn transforms(cell: &CellConfig) -> (Transform, Transform) {
    let test = Transform::Test {
        resize: cell.test_resize,
        crop: cell.image_size,
    };
    let train = match cell.train.augment.as_str() {
        "random-resized-crop" => Transform::Train {
            size: cell.image_size,
        },
        "pad-crop" => Transform::PadCrop {
            size: cell.image_size,
            padding: 8,
        },
        _ => test,
    };
    (test, train)
}

/// Resolves an episode drawn by name against the store it was drawn from.
pub fn slots_of(store: &Store, episode: &Episode) -> SlotEpisode {
    let slot = |class: &str, file: &String| store.slot(class, file).expect("drawn from this store");
    SlotEpisode {
        index: episode.index,
        support: episode
            .classes
            .iter()
            .map(|c| c.support.iter().map(|f| slot(&c.class, f)).collect())
            .collect(),
        query: episode
            .classes
            .iter()
            .map(|c| c.query.iter().map(|f| slot(&c.class, f)).collect())
            .collect(),
    }
}

pub fn to_device(t: &EpisodeTensors, device: &Device) -> Result<EpisodeBatch> {
    let [c, h, w] = t.image_shape;
    let support = Tensor::from_slice(&t.support, (t.support_labels.len(), c, h, w), device)?;
    let query = Tensor::from_slice(&t.query, (t.query_labels.len(), c, h, w), device)?;
    let labels: Vec<u32> = t.query_labels.iter().map(|&l| l as u32).collect();
    Ok(EpisodeBatch {
        support,
        query,
        query_labels: Tensor::from_vec(labels, t.query_labels.len(), device)?,
        query_labels_host: t.query_labels.clone(),
    })
}

/// Loads `episode` from `store` with `transform` (augmentation seeded by `seed`).
pub fn load_episode(
    store: &Store,
    episode: &SlotEpisode,
    transform: Transform,
    seed: u64,
    device: &Device,
) -> Result<EpisodeBatch> {
    let loader = EpisodeLoader {
        store,
        transform,
        seed,
    };
    to_device(&loader.load(episode), device)
}

/// `size` images drawn uniformly without replacement from the whole train store for step `step` of
/// the stream `stream` (`aux` for the episodic stage's auxiliary batches, `pretrain` for the
/// pre-training stage), with their class indices (the store's sorted class order): (images, labels).
pub fn base_class_batch(
    store: &Store,
    size: usize,
    seed: u64,
    stream: &str,
    step: u64,
    transform: Transform,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let h = &store.header;
    let mut owners: Vec<(usize, usize)> = Vec::with_capacity(h.count);
    for (ci, class) in h.classes.iter().enumerate() {
        owners.extend(class.slots.iter().map(|&s| (s, ci)));
    }
    let mut rng = CounterRng::new(
        CounterRng::key_from(&format!("fewshot-{stream}-v1|{}|{seed}", h.dataset)),
        step,
    );
    let picks = rng.choose(owners.len(), size.min(owners.len()));
    let side = transform.output_size() as usize;
    let per = h.channels as usize * side * side;
    let mut data = vec![0f32; picks.len() * per];
    let aug_key =
        CounterRng::key_from(&format!("fewshot-{stream}-augment-v1|{}|{seed}", h.dataset));
    for (k, &pick) in picks.iter().enumerate() {
        let mut aug = CounterRng::new(aug_key, step * 65_536 + k as u64);
        apply(
            transform,
            store.image(owners[pick].0),
            &h.normalization_mean,
            &h.normalization_std,
            &mut aug,
            &mut data[k * per..(k + 1) * per],
        );
    }
    let labels: Vec<u32> = picks.iter().map(|&p| owners[p].1 as u32).collect();
    Ok((
        Tensor::from_vec(data, (picks.len(), h.channels as usize, side, side), device)?,
        Tensor::from_vec(labels, picks.len(), device)?,
    ))
}
