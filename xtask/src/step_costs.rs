//! Cost estimates for `reproduce --dry-run`: seconds per training step and per test episode, read
//! from the `phases.json` of finished run folders and keyed by (backbone, head, image size, shot,
//! device), the median where several ran; a pre-training node is timed by its batches, a cell by its own episodes. Where this
//! clone has no such run, the committed report of the profile (`provenance.json`) says what exactly
//! that cell or node took where the report was made ([`ReportTimes`]); failing both, a resume goes on
//! at the pace of its own committed steps ([`own_pace`]), training only ([`Basis`]).

use std::path::Path;

use fewshot::manifest::cell::CellConfig;
use fewshot::report::run_results::{read_train_log, PhaseTimes};

/// (backbone, head, image size, shot, device) → seconds per training step and per test episode, from
/// finished runs that recorded their phase times.
#[derive(Clone)]
pub struct StepRecord {
    key: String,
    per_step: f64,
    per_episode: f64,
    /// The run's peak resident memory, where its `phases.json` recorded one.
    peak_rss_bytes: Option<u64>,
}

pub fn cost_key(cell: &CellConfig, device: &str) -> String {
    format!(
        "{:?}/{}/{}/{}/{}",
        cell.backbone.kind,
        if cell.is_pretrain_node() {
            "pre-training"
        } else {
            cell.head.name()
        },
        cell.image_size,
        cell.episode.n_shot,
        device.split(':').next().unwrap_or(device)
    )
}

/// Training steps the cell runs itself: a node's pre-training batches, a cell's episodes (its
/// pre-training is its node's).
pub fn steps_of(cell: &CellConfig) -> f64 {
    let t = &cell.train;
    let pre = match (&t.pretrain, cell.is_pretrain_node()) {
        (Some(p), true) => p.epochs * p.batches_per_epoch,
        _ => 0,
    };
    (t.epochs * t.episodes_per_epoch + pre) as f64
}

/// Of [`steps_of`], the steps the run folder `dir` has committed (its `state.json`; 0 without one).
pub fn steps_done(cell: &CellConfig, dir: &Path) -> f64 {
    let Some(state) = fewshot::run_folders::read_state(dir) else {
        return 0.0;
    };
    let epochs = |key: &str| state[key].as_u64().unwrap_or(0) as usize;
    let t = &cell.train;
    let pre = match (&t.pretrain, cell.is_pretrain_node()) {
        (Some(p), true) => epochs("pretrain_epochs_done") * p.batches_per_epoch,
        _ => 0,
    };
    (epochs("epochs_done") * t.episodes_per_epoch + pre) as f64
}

pub fn step_history(runs: &Path) -> Vec<StepRecord> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(runs) else {
        return out;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let phases: Option<PhaseTimes> = fewshot::run_folders::phases(&dir);
        let cell = std::fs::read_to_string(dir.join(fewshot::run_files::CELL))
            .ok()
            .and_then(|t| CellConfig::from_toml(&t).ok());
        let done = match &cell {
            Some(c) if c.is_pretrain_node() => fewshot::run_folders::pretrain_done(&dir),
            _ => read_train_log(&dir).map(|l| !l.is_empty()).unwrap_or(false),
        };
        if let (Some(p), Some(cell), true) = (phases, cell, done) {
            let eval = p.eval_seconds.or(cell.is_pretrain_node().then_some(0.0));
            if let (Some(train), Some(eval)) = (p.train_seconds, eval) {
                out.push(StepRecord {
                    key: cost_key(&cell, &p.device),
                    per_step: train / steps_of(&cell).max(1.0),
                    per_episode: eval / cell.eval.test_episodes.max(1) as f64,
                    peak_rss_bytes: p.peak_rss_bytes,
                });
            }
        }
    }
    out
}

/// The wall time a committed report recorded for each cell and pre-training node it ran, by config
/// hash (a cell: its episodic training and test evaluation; a node: its pre-training), and where
/// that was measured.
#[derive(Debug, Default)]
pub struct ReportTimes {
    /// Training and test-evaluation seconds (a node: 0 for evaluation).
    seconds: std::collections::BTreeMap<String, (f64, f64)>,
    /// The report's file and the processor (or device) its cells ran on.
    pub source: String,
}

impl ReportTimes {
    /// Reads `provenance.json` in the report folder `reports` (empty when there is none).
    pub fn read(reports: &Path) -> Self {
        let path = reports.join("provenance.json");
        let Some(p) = fewshot::report::provenance::read(&path) else {
            return Self::default();
        };
        let mut seconds = std::collections::BTreeMap::new();
        for c in &p.cells {
            if let Some((t, e)) = c
                .phases
                .as_ref()
                .and_then(|p| p.train_seconds.zip(p.eval_seconds))
            {
                seconds.insert(c.config_hash.clone(), (t, e));
            }
            let node = c.pretrain_node.as_ref();
            if let Some((h, t)) =
                node.and_then(|n| Some((&n.config_hash, n.phases.as_ref()?.train_seconds?)))
            {
                seconds.insert(h.clone(), (t, 0.0));
            }
        }
        let machine = (p.cells.iter())
            .find_map(|c| c.trained_on_cpus.first().cloned())
            .unwrap_or(p.build.device);
        Self {
            seconds,
            source: format!("{} (measured on {machine})", path.display()),
        }
    }

    /// What the report recorded for the cell or node with this config hash: (training, evaluation).
    pub fn get(&self, hash: &str) -> Option<(f64, f64)> {
        self.seconds.get(hash).copied()
    }
}

/// What an estimate rests on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Basis {
    /// Step times of a finished run of the same kind on this machine.
    Machine,
    /// The time the profile's committed report recorded for this very config.
    Report,
    /// The pace of the run's own committed steps; its training only (evaluation not included).
    OwnPace,
}

/// Seconds per training step of the run folder `dir` so far: the median of its committed episodic
/// epochs' times (`train-log.jsonl` records each epoch's own duration; the median, so that an epoch
/// stretched by a paused or crowded machine does not set the pace), else its train phase over its
/// committed steps (`phases.json`: a node's pre-training); `None` before anything is committed.
pub fn own_pace(cell: &CellConfig, dir: &Path) -> Option<f64> {
    let epochs: Vec<f64> = (read_train_log(dir).unwrap_or_default().iter())
        .map(|e| e.seconds)
        .collect();
    let pace = if !epochs.is_empty() && cell.train.episodes_per_epoch > 0 {
        median(epochs) / cell.train.episodes_per_epoch as f64
    } else {
        let done = steps_done(cell, dir);
        fewshot::run_folders::phases(dir)?.train_seconds? / done
    };
    Some(pace).filter(|p| p.is_finite() && *p > 0.0)
}

/// The time `cell` still needs with `done` of its training steps committed, at `own_pace` seconds a
/// step so far ([`own_pace`]): from this machine's step times, else from what `report` recorded for
/// the same config, else, for a resume, its remaining training at its own pace.
pub fn estimate_remaining(
    history: &[StepRecord],
    report: &ReportTimes,
    cell: &CellConfig,
    device: &str,
    done: f64,
    own_pace: Option<f64>,
) -> Option<(f64, Basis)> {
    let (steps, episodes) = (steps_of(cell), cell.eval.test_episodes as f64);
    let key = cost_key(cell, device);
    let runs: Vec<&StepRecord> = history.iter().filter(|r| r.key == key).collect();
    if !runs.is_empty() {
        // the median of the finished runs of its kind (a run beside other work is slower)
        let per_step = median(runs.iter().map(|r| r.per_step).collect());
        let per_episode = median(runs.iter().map(|r| r.per_episode).collect());
        return Some((
            per_step * (steps - done).max(0.0) + per_episode * episodes,
            Basis::Machine,
        ));
    }
    if let Some((train, eval)) = report.get(&cell.hash()) {
        let left = if steps > 0.0 {
            (1.0 - done / steps).max(0.0)
        } else {
            0.0
        };
        return Some((train * left + eval, Basis::Report));
    }
    let pace = own_pace.filter(|_| done > 0.0)?;
    Some((pace * (steps - done).max(0.0), Basis::OwnPace))
}

/// The median of `values` (not empty).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    (values[(values.len() - 1) / 2] + values[values.len() / 2]) / 2.0
}

pub fn estimate_seconds(history: &[StepRecord], cell: &CellConfig, device: &str) -> Option<f64> {
    let none = ReportTimes::default();
    estimate_remaining(history, &none, cell, device, 0.0, None).map(|(seconds, _)| seconds)
}

/// The largest peak memory a finished run of the cell's kind recorded, in bytes.
pub fn estimate_peak_bytes(history: &[StepRecord], cell: &CellConfig, device: &str) -> Option<u64> {
    let key = cost_key(cell, device);
    history
        .iter()
        .filter(|r| r.key == key)
        .filter_map(|r| r.peak_rss_bytes)
        .max()
}

pub fn human(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else if seconds < 7200.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_is_estimated_from_a_finished_run_of_its_kind_only() {
        let manifests = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests");
        let e = fewshot::manifest::experiment::Experiment::read(&manifests, "table1").unwrap();
        let plan = e.plan(&manifests, "cpu-conv4").unwrap();
        let (protonet_1, cosine_1) = (&plan[0].cell, &plan[2].cell);
        assert_eq!(steps_of(protonet_1), 2000.0, "10 epochs of 200 episodes");
        let node = protonet_1.pretrain_node().unwrap();
        assert_eq!(steps_of(&node), 9000.0, "30 epochs of 300 batches");
        let history = vec![StepRecord {
            key: cost_key(protonet_1, "cpu"),
            per_step: 0.5,
            per_episode: 0.02,
            peak_rss_bytes: Some(3 << 30),
        }];
        assert_eq!(
            estimate_seconds(&history, protonet_1, "cpu"),
            Some(0.5 * 2000.0 + 0.02 * 2000.0)
        );
        assert_eq!(estimate_seconds(&history, cosine_1, "cpu"), None);
        // several finished runs of its kind: the median (of 0.5, 0.6 and 2.0 s a step)
        let mut three = vec![StepRecord {
            key: cost_key(protonet_1, "cpu"),
            per_step: 2.0,
            per_episode: 0.02,
            peak_rss_bytes: None,
        }];
        three.push(StepRecord {
            per_step: 0.6,
            ..three[0].clone()
        });
        three.push(StepRecord {
            per_step: 0.5,
            ..three[0].clone()
        });
        assert_eq!(
            estimate_seconds(&three, protonet_1, "cpu"),
            Some(0.6 * 2000.0 + 0.02 * 2000.0)
        );
        assert_eq!(
            estimate_peak_bytes(&history, protonet_1, "cpu"),
            Some(3 << 30)
        );
        assert_eq!(estimate_peak_bytes(&history, cosine_1, "cpu"), None);
        assert_eq!(estimate_seconds(&history, protonet_1, "cuda:0"), None);
        // a resume: 4 of 10 episodic epochs committed, from this machine's step times, else from
        // the committed report's time for this very config
        let dir = tempfile::tempdir().unwrap();
        let state =
            serde_json::json!({"pretrain_epochs_done": 0, "epochs_done": 4, "global_step": 800});
        std::fs::write(dir.path().join("state.json"), state.to_string()).unwrap();
        let done = steps_done(protonet_1, dir.path());
        assert_eq!(done, 800.0);
        let none = ReportTimes::default();
        assert_eq!(
            estimate_remaining(&history, &none, protonet_1, "cpu", done, Some(5.0)),
            Some((0.5 * 1200.0 + 0.02 * 2000.0, Basis::Machine))
        );
        let mut report = ReportTimes::default();
        report.seconds.insert(protonet_1.hash(), (1000.0, 30.0));
        assert_eq!(
            estimate_remaining(&[], &report, protonet_1, "cpu", done, Some(5.0)),
            Some((600.0 + 30.0, Basis::Report))
        );
        assert_eq!(
            estimate_remaining(&[], &report, cosine_1, "cpu", 0.0, None),
            None
        );
        // neither: a resume goes on at its own pace (5 s a step: 1,200 more take 6,000 s),
        // training only; a new cell, or one without a pace, stays unknown
        assert_eq!(
            estimate_remaining(&[], &none, cosine_1, "cpu", done, Some(5.0)),
            Some((6000.0, Basis::OwnPace))
        );
        assert_eq!(
            estimate_remaining(&[], &none, cosine_1, "cpu", 0.0, Some(5.0)),
            None
        );
        assert_eq!(
            estimate_remaining(&[], &none, cosine_1, "cpu", done, None),
            None
        );
        // the pace: the phases' time over the committed steps without a log of epochs, else the
        // median of the logged epochs' durations (one stretched by a pause does not set it)
        assert_eq!(own_pace(cosine_1, dir.path()), None, "nothing recorded");
        fewshot::run_folders::record_phase(
            dir.path(),
            fewshot::run_folders::Phase::Train,
            "cpu",
            4000.0,
        )
        .unwrap();
        assert_eq!(own_pace(cosine_1, dir.path()), Some(5.0));
        let log: String = [320.0, 320.0, 330.0, 1730.0, 330.0]
            .iter()
            .enumerate()
            .map(|(epoch, seconds)| {
                let line = serde_json::json!({"epoch": epoch, "lr": 0.001, "mean_loss": 1.0,
                    "val_accuracy": 0.5, "seconds": seconds});
                format!("{line}\n")
            })
            .collect();
        std::fs::write(dir.path().join(fewshot::run_files::TRAIN_LOG), log).unwrap();
        assert_eq!(own_pace(cosine_1, dir.path()), Some(330.0 / 200.0));
        assert_eq!(human(90.0), "90 s");
        assert_eq!(human(5400.0), "90.0 min");
        assert_eq!(human(36000.0), "10.0 h");
    }

    #[test]
    fn a_committed_report_times_its_own_cells_and_their_node_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            ReportTimes::read(dir.path()).get("any").is_none(),
            "no report, no times"
        );
        // the committed cpu-conv4 report (written before nodes and build commits were recorded)
        // reads, and with three of its cells changed: one with a node, one not evaluated, one empty
        let committed = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../reports/cpu-conv4/provenance.json");
        assert!(fewshot::report::provenance::read(&committed).is_some());
        let text = std::fs::read_to_string(&committed).unwrap();
        let mut provenance: serde_json::Value = serde_json::from_str(&text).unwrap();
        let cells = provenance["cells"].as_array_mut().unwrap();
        cells[0]["config_hash"] = "c1".into();
        cells[0]["trained_on_cpus"] = serde_json::json!(["AMD EPYC (avx2 fma)"]);
        cells[0]["phases"] =
            serde_json::json!({"train_seconds": 100.0, "eval_seconds": 20.0, "device": "cpu"});
        cells[0]["pretrain_node"] = serde_json::json!({"config_hash": "n1",
            "phases": {"train_seconds": 900.0, "eval_seconds": null, "device": "cpu"}});
        cells[1]["config_hash"] = "c2".into();
        cells[1]["phases"] =
            serde_json::json!({"train_seconds": 50.0, "eval_seconds": null, "device": "cpu"});
        cells[2]["config_hash"] = "c3".into();
        cells[2]["phases"] = serde_json::Value::Null;
        std::fs::write(dir.path().join("provenance.json"), provenance.to_string()).unwrap();
        let times = ReportTimes::read(dir.path());
        assert_eq!(
            times.get("c1"),
            Some((100.0, 20.0)),
            "training and evaluation"
        );
        assert_eq!(
            times.get("n1"),
            Some((900.0, 0.0)),
            "the node's pre-training"
        );
        assert_eq!(times.get("c2"), None, "not evaluated: no whole time");
        assert_eq!(times.get("c3"), None);
        assert!(
            times.source.ends_with("(measured on AMD EPYC (avx2 fma))"),
            "{}",
            times.source
        );
    }
}
