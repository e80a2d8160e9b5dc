//! `fewshot runs list|gc`: the run folders under `runs/` — what each holds (cell, status, accuracy,
//! size) — and pruning the ones no current plan produces: cells (and their shared pre-training nodes)
//! of no profile of any experiment in `manifests/experiments/` and of no CI gate, and folders set aside
//! as stale by `reproduce`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::manifest::baseline::CiBaselines;
use crate::manifest::cell::CellConfig;
use crate::manifest::experiment::{Experiment, PlannedCell};
use crate::report::run_results::PhaseTimes;

/// The names of a run folder's files (their own module, below everything that reads or writes them).
pub use crate::run_files as files;
use crate::run_lock::try_lock;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub folder: String,
    pub dataset: Option<String>,
    pub method: Option<String>,
    pub shot: Option<usize>,
    /// `evaluated`, `trained`, `training` (a last checkpoint, no best yet), or `empty`.
    pub status: String,
    pub accuracy: Option<f64>,
    pub bytes: u64,
}

fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        folder_bytes(&p)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Every folder under `runs`, sorted by name.
pub fn list(runs: &Path) -> Result<Vec<RunSummary>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(runs) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(runs, e)),
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        // `.slurm/` (submissions) and other dot-folders are not run folders
        if !dir.is_dir() || entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let cell = std::fs::read_to_string(dir.join(files::CELL))
            .ok()
            .and_then(|t| CellConfig::from_toml(&t).ok());
        let eval = crate::report::run_results::read_eval(&dir).ok().flatten();
        let node = cell.as_ref().is_some_and(CellConfig::is_pretrain_node);
        // trained: every epoch done (`state.json`, the commit's readable copy) and its best published
        let all_epochs = cell.as_ref().is_some_and(|c| {
            read_state(&dir)
                .is_some_and(|s| s["epochs_done"].as_u64() >= Some(c.train.epochs as u64))
        });
        let status = if node && pretrain_done(&dir) {
            "pre-trained"
        } else if eval.is_some() {
            "evaluated"
        } else if all_epochs
            && dir.join(files::CHECKPOINT_BEST).is_file()
            && !files::has_pending_best(&dir)
        {
            "trained"
        } else if dir.join(files::CHECKPOINT_LAST).is_file() {
            "training"
        } else {
            "empty"
        };
        out.push(RunSummary {
            folder: entry.file_name().to_string_lossy().into_owned(),
            dataset: cell.as_ref().map(|c| c.dataset.clone()),
            method: cell.as_ref().map(|c| match node {
                true => "pre-training".to_string(),
                false => c.head.name().to_string(),
            }),
            shot: cell.as_ref().map(|c| c.episode.n_shot).filter(|_| !node),
            status: status.into(),
            accuracy: eval.map(|e| e.mean),
            bytes: folder_bytes(&dir),
        });
    }
    out.sort_by(|a, b| a.folder.cmp(&b.folder));
    Ok(out)
}

/// Whether the pre-training node in `dir` finished its epochs (its `state.json`, rewritten at the end of
/// every `train`, says so).
pub fn pretrain_done(dir: &Path) -> bool {
    let cell = std::fs::read_to_string(dir.join(files::CELL))
        .ok()
        .and_then(|t| CellConfig::from_toml(&t).ok());
    match (cell.and_then(|c| c.train.pretrain), read_state(dir)) {
        (Some(p), Some(s)) => s["pretrain_epochs_done"].as_u64() == Some(p.epochs as u64),
        _ => false,
    }
}

/// A run folder's `state.json` as plain JSON (readable without the learning code), if it has one.
pub fn read_state(dir: &Path) -> Option<serde_json::Value> {
    std::fs::read(dir.join(files::STATE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Where a planned cell's run folder stands — the cache rule of `reproduce`: a result is reused unless
/// the test store it was scored on is no longer the prepared one; a folder with a last checkpoint
/// resumes.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheState {
    Done,
    Resumable,
    New,
    /// A result whose store fingerprint no longer matches the prepared store.
    Stale(String),
}

/// The cache state of `c`'s run folder under `runs`, against the prepared test store under `data_dir`.
pub fn cache_state(runs: &Path, data_dir: &Path, manifests: &Path, c: &PlannedCell) -> CacheState {
    cache_rule(
        &runs.join(c.cell.hash()),
        current_test_fingerprint(data_dir, manifests, c).as_deref(),
    )
}

/// The rule itself: `current` is the fingerprint of the test store as prepared now (`None`: not
/// prepared, so a result cannot be checked and stands).
pub fn cache_rule(dir: &Path, current: Option<&str>) -> CacheState {
    match crate::report::run_results::read_eval(dir) {
        Ok(Some(e)) => match current {
            Some(fp) if fp != e.store_fingerprint => CacheState::Stale(format!(
                "test store fingerprint {} ≠ {}",
                &fp[..12.min(fp.len())],
                &e.store_fingerprint[..12.min(e.store_fingerprint.len())]
            )),
            _ => CacheState::Done,
        },
        _ if dir.join(files::CHECKPOINT_LAST).is_file() => CacheState::Resumable,
        _ => CacheState::New,
    }
}

/// The fingerprint of the cell's prepared test store, when it is prepared.
pub fn current_test_fingerprint(
    data_dir: &Path,
    manifests: &Path,
    c: &PlannedCell,
) -> Option<String> {
    let m = crate::manifest::load_dataset(manifests, &c.dataset).ok()?;
    let (variant, _) = m.split_lists(c.cell.split_variant.as_deref()).ok()?;
    let path = crate::data::prepare::store_dir(data_dir, &m, variant).join(
        crate::data::prepare::store_file_name(&m, "test", c.cell.store_size),
    );
    crate::data::store::Store::open(&path)
        .ok()
        .map(|s| s.header.fingerprint.clone())
}

/// A phase of a cell whose wall time `phases.json` records.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    /// Adds up over resumed runs.
    Train,
    /// The last evaluation's time.
    Eval,
}

/// Records `seconds` of `phase` on `device` in the run folder's `phases.json` (written atomically).
pub fn record_phase(dir: &Path, phase: Phase, device: &str, seconds: f64) -> Result<()> {
    let mut recorded: PhaseTimes = phases(dir).unwrap_or_default();
    recorded.device = device.to_string();
    match phase {
        Phase::Train => {
            recorded.train_seconds = Some(recorded.train_seconds.unwrap_or(0.0) + seconds)
        }
        Phase::Eval => recorded.eval_seconds = Some(seconds),
    }
    recorded.peak_rss_bytes = recorded.peak_rss_bytes.max(peak_rss_bytes());
    crate::atomic_write::write_json(&dir.join(files::PHASES), &recorded)
}

/// This process's peak resident memory so far (`VmHWM` in `/proc/self/status`), or `None` where
/// the system does not say.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The phase times recorded in a run folder, if any.
pub use crate::report::run_results::read_phases as phases;

/// Hashes of every cell some plan produces: each profile of each experiment, and each CI gate.
pub fn planned_hashes(manifests: &Path) -> Result<BTreeSet<String>> {
    let mut keep = BTreeSet::new();
    let dir = manifests.join("experiments");
    for entry in std::fs::read_dir(&dir)
        .map_err(|e| Error::io(&dir, e))?
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let name = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let experiment = Experiment::read(manifests, &name)?;
            for profile in experiment.profile.keys() {
                for c in experiment.plan(manifests, profile)? {
                    keep.insert(c.cell.hash());
                    // the shared pre-training node the cell starts from
                    if let Some(node) = c.cell.pretrain_node() {
                        keep.insert(node.hash());
                    }
                }
            }
        }
    }
    let baselines = manifests.join("baselines/ci.toml");
    if baselines.is_file() {
        for g in CiBaselines::read(&baselines)?.gate {
            let path = manifests.join(&g.cell);
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let cell = CellConfig::from_toml(&text)
                .map_err(|message| Error::Manifest { path, message })?;
            keep.insert(cell.hash());
        }
    }
    Ok(keep)
}

/// Removes the folders under `runs` whose name is not in `keep` (all of them with `dry_run` false),
/// except one a process is working in (its lock held, [`try_lock`]); returns them with their sizes.
pub fn gc(runs: &Path, keep: &BTreeSet<String>, dry_run: bool) -> Result<Vec<(PathBuf, u64)>> {
    let mut removed = Vec::new();
    for run in list(runs)? {
        if keep.contains(&run.folder) {
            continue;
        }
        let path = runs.join(&run.folder);
        // held while the folder goes, so that no process starts work in it meanwhile
        let Some(_held) = try_lock(&path)? else {
            tracing::warn!(
                "{} is in use by another process; left in place",
                path.display()
            );
            continue;
        };
        if !dry_run {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
        removed.push((path, run.bytes));
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_lock::lock;

    #[test]
    fn gc_keeps_planned_cells_and_removes_the_rest() {
        let manifests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests");
        let keep = planned_hashes(&manifests).unwrap();
        let smoke = Experiment::read(&manifests, "table1")
            .unwrap()
            .plan(&manifests, "smoke")
            .unwrap();
        let kept = smoke[0].cell.hash();
        assert!(keep.contains(&kept));
        let runs = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(runs.path().join(&kept)).unwrap();
        std::fs::create_dir_all(runs.path().join("0123456789abcdef")).unwrap();
        std::fs::write(runs.path().join("0123456789abcdef/eval.json"), b"{}").unwrap();
        std::fs::create_dir_all(runs.path().join(format!("{kept}.stale-1"))).unwrap();
        // an unplanned folder a process works in (its lock held) is left alone until it is released
        let busy = runs.path().join("fedcba9876543210");
        let (held, _) = lock(&busy).unwrap();
        assert!(try_lock(&busy).unwrap().is_none());
        assert!(try_lock(&runs.path().join(&kept)).unwrap().is_some());
        let listed = list(runs.path()).unwrap();
        assert_eq!(listed.len(), 4);
        let dry = gc(runs.path(), &keep, true).unwrap();
        assert_eq!(dry.len(), 2);
        assert_eq!(
            list(runs.path()).unwrap().len(),
            4,
            "a dry run removes nothing"
        );
        gc(runs.path(), &keep, false).unwrap();
        let left = |runs: &Path| -> Vec<String> {
            list(runs).unwrap().into_iter().map(|r| r.folder).collect()
        };
        assert_eq!(
            left(runs.path()),
            vec![kept.clone(), "fedcba9876543210".into()]
        );
        drop(held);
        gc(runs.path(), &keep, false).unwrap();
        assert_eq!(left(runs.path()), vec![kept]);
    }

    /// `runs list` calls a folder trained only when every epoch is committed and its best checkpoint
    /// published: a best checkpoint exists from the first better epoch on, and one can wait pending.
    #[test]
    fn a_folder_is_trained_only_when_its_epochs_are_done_and_its_best_published() {
        let manifests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests");
        let cell = Experiment::read(&manifests, "table1")
            .unwrap()
            .plan(&manifests, "smoke")
            .unwrap()[0]
            .cell
            .clone();
        let runs = tempfile::tempdir().unwrap();
        let dir = runs.path().join(cell.hash());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(files::CELL), toml::to_string(&cell).unwrap()).unwrap();
        let status = || list(runs.path()).unwrap()[0].status.clone();
        assert_eq!(status(), "empty");
        for f in [files::CHECKPOINT_LAST, files::CHECKPOINT_BEST] {
            std::fs::write(dir.join(f), b"weights").unwrap();
        }
        let epochs = |n: usize| {
            let state = serde_json::json!({"cell_hash": cell.hash(), "epochs_done": n,
                "global_step": 0, "best_val": null, "best_epoch": null});
            std::fs::write(dir.join(files::STATE), state.to_string()).unwrap();
        };
        epochs(cell.train.epochs - 1);
        assert_eq!(status(), "training");
        epochs(cell.train.epochs);
        assert_eq!(status(), "trained");
        std::fs::write(dir.join(files::pending_best(cell.train.epochs)), b"w").unwrap();
        assert_eq!(status(), "training", "its best checkpoint still pending");
    }

    #[test]
    fn the_cache_rule_reuses_results_resumes_checkpoints_and_sets_stale_ones_apart() {
        let runs = tempfile::tempdir().unwrap();
        let dir = runs.path().join("0123456789abcdef");
        assert_eq!(cache_rule(&dir, None), CacheState::New);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("checkpoint-last.safetensors"), b"x").unwrap();
        assert_eq!(cache_rule(&dir, Some("aaaa")), CacheState::Resumable);
        let eval = serde_json::json!({
            "cell_hash": "0123456789abcdef", "dataset": "mini-imagenet", "method": "protonet", "shot": 1,
            "mean": 0.5, "ci95": 0.01, "n": 2000, "ci_formula": "1.96 * std(ddof=1) / sqrt(n)",
            "store_fingerprint": "9df30158d9febf377072", "episodes_sha256": "fe79", "seed": 1,
            "checkpoint": "checkpoint-best.safetensors", "device": "cpu", "threads": 2, "git_commit": null
        });
        std::fs::write(dir.join("eval.json"), eval.to_string()).unwrap();
        assert_eq!(
            cache_rule(&dir, Some("9df30158d9febf377072")),
            CacheState::Done
        );
        assert_eq!(
            cache_rule(&dir, None),
            CacheState::Done,
            "an unprepared store cannot make it stale"
        );
        assert_eq!(
            cache_rule(&dir, Some("18b7f2acc1907e022b30")),
            CacheState::Stale("test store fingerprint 18b7f2acc190 ≠ 9df30158d9fe".into())
        );
        std::fs::write(dir.join("eval.json"), b"{").unwrap();
        assert_eq!(
            cache_rule(&dir, None),
            CacheState::Resumable,
            "an unreadable result is redone"
        );
    }

    #[test]
    fn phases_add_up_over_resumes_and_the_lock_waits_for_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        record_phase(dir.path(), Phase::Train, "cpu", 10.0).unwrap();
        record_phase(dir.path(), Phase::Train, "cpu", 5.0).unwrap();
        record_phase(dir.path(), Phase::Eval, "cpu", 3.0).unwrap();
        record_phase(dir.path(), Phase::Eval, "cpu", 2.0).unwrap();
        let p = phases(dir.path()).unwrap();
        assert_eq!((p.train_seconds, p.eval_seconds), (Some(15.0), Some(2.0)));
        // the peak memory: this process's, and a larger one recorded earlier (a resumed run) is kept.
        // Not compared with a later reading: Linux updates VmHWM lazily, so memory freed by another
        // test thread in between can make a later reading smaller (seen: 1 run in 4)
        let peak = p.peak_rss_bytes.expect("Linux says VmHWM");
        assert!(peak > 1 << 20, "{peak} bytes");
        let earlier = PhaseTimes {
            peak_rss_bytes: Some(1 << 40),
            ..p
        };
        crate::atomic_write::write_json(&dir.path().join(files::PHASES), &earlier).unwrap();
        record_phase(dir.path(), Phase::Eval, "cpu", 2.0).unwrap();
        assert_eq!(phases(dir.path()).unwrap().peak_rss_bytes, Some(1 << 40));
        let (held, waited) = lock(dir.path()).unwrap();
        assert!(!waited);
        let path = dir.path().to_path_buf();
        let second = std::thread::spawn(move || lock(&path).map(|(_, waited)| waited).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!second.is_finished(), "a second holder waits");
        drop(held);
        assert!(second.join().unwrap(), "and says it waited");
        // the lock file is a dot-file and the folder has no run folders in it
        assert!(list(dir.path()).unwrap().is_empty());
    }
}
