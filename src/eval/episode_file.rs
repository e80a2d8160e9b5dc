//! The per-episode file (`episodes.jsonl`, `episodes-<checkpoint>.jsonl`, the CI gates' blessed
//! `*.episodes.jsonl`): one JSON record per line, `{"episode", "accuracy", "loss"}`. This module owns
//! the format: the evaluation writes it, the CI gate, `regress` and the report read it.
//!
//! `loss` is the episode's mean cross-entropy of the query logits against the query labels (natural
//! log, computed in f64 from the f32 logits). Accuracy moves only when a query's largest logit
//! changes; the loss moves with every logit, so the CI gate can tell a changed computation on a
//! handful of episodes. Files written before 2026-12-07 have no `loss`; they still read. A
//! non-finite loss would be written as `null` (JSON has no NaN) and read back as absent, so
//! `cargo xtask regress --bless` refuses to bless an evaluation without a finite loss per episode.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One line of a per-episode file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpisodeAccuracy {
    pub episode: u64,
    pub accuracy: f64,
    /// Mean query cross-entropy (absent in files written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
}

/// Reads a per-episode file.
pub fn read_episode_accuracies(path: &Path) -> Result<Vec<EpisodeAccuracy>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| Error::invalid(format!("{} line {}: {e}", path.display(), i + 1)))
        })
        .collect()
}

/// Writes a per-episode file atomically.
pub fn write_episode_accuracies(path: &Path, records: &[EpisodeAccuracy]) -> Result<()> {
    let mut out = Vec::new();
    for r in records {
        serde_json::to_writer(&mut out, r).expect("plain struct");
        out.write_all(b"\n").expect("vec write");
    }
    crate::atomic_write::write_atomically(path, &out)
}

/// The accuracy and the mean cross-entropy of one episode's `logits` (one row of `n_way` per query)
/// against `labels`.
pub fn score_episode(logits: &[Vec<f32>], labels: &[usize]) -> (f64, f64) {
    let mut correct = 0usize;
    let mut loss = 0.0f64;
    for (row, &label) in logits.iter().zip(labels) {
        // the first largest logit, as candle's argmax picks it
        let best = (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b });
        correct += usize::from(best == label);
        let max = row[best] as f64;
        let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
        loss += max + sum.ln() - row[label] as f64;
    }
    let n = labels.len() as f64;
    (correct as f64 / n, loss / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_accuracy_and_cross_entropy() {
        let logits = vec![
            vec![2.0, 0.0, 0.0],
            vec![0.0, 0.0, 0.0],
            vec![1.0, 3.0, 1.0],
        ];
        let (accuracy, loss) = score_episode(&logits, &[0, 0, 0]);
        // ties go to the first (as candle's argmax): the second query counts as right
        assert_eq!(accuracy, 2.0 / 3.0);
        let ce = |row: [f64; 3], l: usize| {
            -(row[l].exp() / row.iter().map(|x| x.exp()).sum::<f64>()).ln()
        };
        let want = (ce([2.0, 0.0, 0.0], 0) + ce([0.0; 3], 0) + ce([1.0, 3.0, 1.0], 0)) / 3.0;
        assert!((loss - want).abs() < 1e-12, "{loss} vs {want}");
    }

    #[test]
    fn reads_what_it_writes_and_files_without_a_loss() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("episodes.jsonl");
        let records = [EpisodeAccuracy {
            episode: 3,
            accuracy: 0.5,
            loss: Some(1.25),
        }];
        write_episode_accuracies(&path, &records).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"episode\":3,\"accuracy\":0.5,\"loss\":1.25}\n");
        assert_eq!(read_episode_accuracies(&path).unwrap(), records);
        std::fs::write(
            &path,
            "{\"episode\":0,\"accuracy\":0.5}\n{\"episode\":1,\"accuracy\":1.0}\n",
        )
        .unwrap();
        let r = read_episode_accuracies(&path).unwrap();
        assert_eq!((r.len(), r[1].accuracy, r[1].loss), (2, 1.0, None));
        std::fs::write(&path, "not json\n").unwrap();
        let err = read_episode_accuracies(&path).unwrap_err().to_string();
        assert!(err.contains("episodes.jsonl line 1"), "{err}");
    }
}
