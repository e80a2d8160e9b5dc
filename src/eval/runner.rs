//! Evaluation on frozen episodes: one accuracy per episode (argmax of the logits against the query
//! labels), written one JSON record per line, and the mean with its 95% CI.

use std::io::Write;
use std::path::Path;

use candle_core::Result;
use serde::{Deserialize, Serialize};

use super::stats::{mean_ci95, MeanCi};
use crate::data::frozen_episodes::SlotEpisode;
use crate::data::store::Store;
use crate::data::transforms::Transform;
use crate::progress::count_bar;
use crate::train::episode_batch::load_episode;
use crate::train::model::FewShotModel;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpisodeRecord {
    pub episode: u64,
    pub accuracy: f64,
}

/// Accuracy on each of `episodes` (eval mode: batch-norm running statistics, no augmentation).
pub fn evaluate(
    model: &FewShotModel,
    store: &Store,
    episodes: &[SlotEpisode],
    transform: Transform,
    label: &str,
) -> Result<Vec<EpisodeRecord>> {
    let bar = count_bar(label, episodes.len() as u64);
    let mut records = Vec::with_capacity(episodes.len());
    for episode in episodes {
        let batch = load_episode(store, episode, transform, 0, &model.device)?;
        let logits = model.episode(&batch.support, &batch.query, false)?.logits;
        let predicted: Vec<u32> = logits.argmax(1)?.to_vec1()?;
        let correct = predicted
            .iter()
            .zip(&batch.query_labels_host)
            .filter(|(p, l)| **p as usize == **l)
            .count();
        records.push(EpisodeRecord {
            episode: episode.index,
            accuracy: correct as f64 / predicted.len() as f64,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(records)
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
