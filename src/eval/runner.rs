//! Evaluation on frozen episodes: one accuracy per episode (argmax of the logits against the query
//! labels), written one JSON record per line, and the mean with its 95% CI.

use std::io::Write;
use std::path::Path;

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

use super::episode_logits::episode_logits;
use super::stats::{mean_ci95, MeanCi};
use crate::data::frozen_episodes::SlotEpisode;
use crate::data::store::Store;
use crate::data::transforms::Transform;
use crate::model::few_shot::FewShotModel;
use crate::progress::count_bar;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpisodeRecord {
    pub episode: u64,
    pub accuracy: f64,
}

/// Accuracy on each of `episodes` (eval mode: batch-norm running statistics, no augmentation), the
/// backbone run once per distinct image where `transform` allows (see [`episode_logits`]).
pub fn evaluate(
    model: &FewShotModel,
    store: &Store,
    episodes: &[SlotEpisode],
    transform: Transform,
    label: &str,
) -> Result<Vec<EpisodeRecord>> {
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
            records.push(EpisodeRecord {
                episode: episode.index,
                accuracy: accuracy(&logits, labels)?,
            });
            bar.inc(1);
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    Ok(records)
}

/// The share of queries whose largest logit is their label's.
pub fn accuracy(logits: &Tensor, labels: &[usize]) -> Result<f64> {
    let predicted: Vec<u32> = logits.argmax(1)?.to_vec1()?;
    let correct = predicted
        .iter()
        .zip(labels)
        .filter(|(p, l)| **p as usize == **l)
        .count();
    Ok(correct as f64 / predicted.len() as f64)
}

/// Mean and CI of records.
pub fn summarise(records: &[EpisodeRecord]) -> MeanCi {
    mean_ci95(&records.iter().map(|r| r.accuracy).collect::<Vec<_>>())
}

/// Writes `episodes.jsonl` (one record per line) atomically.
pub fn write_records(path: &Path, records: &[EpisodeRecord]) -> crate::Result<()> {
    let mut out = Vec::new();
    for r in records {
        serde_json::to_writer(&mut out, r).expect("plain struct");
        out.write_all(b"\n").expect("vec write");
    }
    crate::atomic_write::write_atomically(path, &out)
}
