//! Evaluation on frozen episodes: one accuracy per episode (argmax of the logits against the query
//! labels) and its mean query cross-entropy (the per-episode file, `super::episode_file`), and the
//! mean accuracy with its 95% CI.

use candle_core::{DType, Result};

use super::episode_file::{score_episode, EpisodeAccuracy};
use super::episode_logits::episode_logits;
use super::stats::{mean_ci95, MeanCi};
use crate::data::frozen_episodes::SlotEpisode;
use crate::data::store::Store;
use crate::data::transforms::Transform;
use crate::model::few_shot::FewShotModel;
use crate::progress::count_bar;

/// Accuracy on each of `episodes` (eval mode: batch-norm running statistics, no augmentation), the
/// backbone run once per distinct image where `transform` allows (see [`episode_logits`]).
pub fn evaluate(
    model: &FewShotModel,
    store: &Store,
    episodes: &[SlotEpisode],
    transform: Transform,
    label: &str,
) -> Result<Vec<EpisodeAccuracy>> {
    let bar = count_bar(label, episodes.len() as u64);
    let mut records = Vec::with_capacity(episodes.len());
    let mut images = 0usize;
    episode_logits(
        model,
        store,
        episodes,
        transform,
        &mut |n| {
            images += n;
            bar.set_message(format!("{label} ({images} images)"));
        },
        &mut |episode, logits, labels| {
            let (accuracy, loss) = score_episode(&logits.to_dtype(DType::F32)?.to_vec2()?, labels);
            records.push(EpisodeAccuracy {
                episode: episode.index,
                accuracy,
                loss: Some(loss),
            });
            bar.inc(1);
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    Ok(records)
}

/// Mean and CI of records.
pub fn summarise(records: &[EpisodeAccuracy]) -> MeanCi {
    mean_ci95(&records.iter().map(|r| r.accuracy).collect::<Vec<_>>())
}
