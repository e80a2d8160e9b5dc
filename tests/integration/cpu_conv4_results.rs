//! The committed `cpu-conv4` results (issue #28): the table's numbers are the mean and 95% CI of the
//! committed per-episode file, cell by cell; and each committed checkpoint, re-scored by the suite on
//! the real miniImageNet test store with the cell config committed beside it (`<hash>.toml`), gives
//! the committed per-episode accuracies of its first test episodes (5 per cell, to keep CI short — every cell's checkpoint, head and shot, each episode exact; on the same kind of machine and store: a store prepared from
//! another distribution has another fingerprint and may differ by a few queries).

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::Device;
use fewshot::eval::cell_eval::{eval_cell, Weights};
use fewshot::eval::episode_file::read_episode_accuracies;
use fewshot::manifest::cell::CellConfig;
use fewshot::model::run_context::RunPaths;

use crate::real_data::prepared_data_dir;

/// Test episodes re-scored per cell (of the committed 2,000).
const RESCORED: usize = 5;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// cell hash → its per-episode accuracies, in episode order, from `table1-episodes.csv`.
fn committed_episodes() -> BTreeMap<String, Vec<f64>> {
    let text =
        std::fs::read_to_string(repo().join("reports/cpu-conv4/table1-episodes.csv")).unwrap();
    let mut cells: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let v = cells.entry(f[5].to_string()).or_default();
        assert_eq!(f[6].parse::<usize>().unwrap(), v.len(), "episodes in order");
        v.push(f[7].parse().unwrap());
    }
    cells
}

#[test]
fn the_committed_table_is_the_mean_and_ci_of_the_committed_episodes() {
    let episodes = committed_episodes();
    assert_eq!(episodes.len(), 8, "all eight cells");
    let table = std::fs::read_to_string(repo().join("reports/cpu-conv4/table1.csv")).unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut rows = 0;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let acc = &episodes[f[col("cell_hashes")]];
        assert_eq!(acc.len(), 2000);
        let n = acc.len() as f64;
        let mean = acc.iter().sum::<f64>() / n;
        let sd = (acc.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let (table_mean, table_ci): (f64, f64) = (
            f[col("accuracy")].parse().unwrap(),
            f[col("ci95")].parse().unwrap(),
        );
        assert!((100.0 * mean - table_mean).abs() < 1e-9, "{line}");
        assert!(
            (100.0 * 1.96 * sd / n.sqrt() - table_ci).abs() < 1e-9,
            "{line}"
        );
        rows += 1;
    }
    assert_eq!(rows, 8);
}

#[test]
fn the_committed_checkpoints_rescore_to_the_committed_episodes() {
    fewshot::threads::pin_thread_count();
    let manifests = repo().join("manifests");
    let episodes = committed_episodes();
    let runs = tempfile::tempdir().unwrap();
    let paths = RunPaths {
        data_dir: prepared_data_dir(),
        manifests: manifests.clone(),
        runs: runs.path().to_path_buf(),
    };
    for hash in episodes.keys() {
        // each checkpoint's cell config beside it: the committed table's recipe, whatever the
        // profile says now (a profile change re-runs the table, and only then replaces these)
        let checkpoints = repo().join("reports/cpu-conv4/checkpoints");
        let text = std::fs::read_to_string(checkpoints.join(format!("{hash}.toml"))).unwrap();
        let mut cell = CellConfig::from_toml(&text).unwrap();
        assert_eq!(&cell.hash(), hash, "the config beside checkpoint {hash}");
        cell.eval.test_episodes = RESCORED;
        let checkpoint = checkpoints.join(format!("{hash}.safetensors"));
        eval_cell(&cell, &paths, &Device::Cpu, &Weights::File(checkpoint)).unwrap();
        let now = read_episode_accuracies(
            &runs
                .path()
                .join(cell.hash())
                .join(format!("episodes-{hash}.jsonl")),
        )
        .unwrap();
        let now: Vec<f64> = now.iter().map(|e| e.accuracy).collect();
        assert_eq!(
            now,
            episodes[hash][..RESCORED],
            "{:?} {}-shot ({hash})",
            cell.head,
            cell.episode.n_shot
        );
    }
}
