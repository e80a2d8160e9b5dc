//! Real `fewshot train` processes on real data: killed (SIGKILL) at many instants of a run, they
//! resume to the end state of a run never killed and keep their training time in `phases.json`; two
//! processes that share a pre-training node train it once.

use super::learning::{repo, small_cell};
use crate::real_data::prepared_data_dir;

/// A `fewshot train` process of the cell in `config` into `runs`, on one thread.
fn spawn_train(config: &std::path::Path, runs: &std::path::Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_fewshot"))
        .arg("train")
        .arg("--config")
        .arg(config)
        .args(["--device", "cpu", "--data-dir"])
        .arg(prepared_data_dir())
        .arg("--manifests")
        .arg(repo().join("manifests"))
        .arg("--runs")
        .arg(runs)
        .env("RAYON_NUM_THREADS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// `fewshot train` of the cell in `config` into `runs`, on one thread; killed (SIGKILL) after
/// `kill_after` unless it ends first. Returns whether it ran to its end.
fn train_process(
    config: &std::path::Path,
    runs: &std::path::Path,
    kill_after: Option<f64>,
) -> bool {
    let mut child = spawn_train(config, runs);
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            assert!(status.success(), "fewshot train failed: {err}");
            return true;
        }
        if kill_after.is_some_and(|s| started.elapsed().as_secs_f64() >= s) {
            child.kill().unwrap();
            child.wait().unwrap();
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A run folder's end state: the last and best checkpoints' bytes, and its log's lines without
/// their wall-clock seconds.
fn end_state(dir: &std::path::Path) -> (Vec<u8>, Option<Vec<u8>>, Vec<serde_json::Value>) {
    use fewshot::run_files as files;
    let log = fewshot::train_log::lines(&dir.join(files::TRAIN_LOG)).unwrap();
    let log = log
        .into_iter()
        .map(|mut line| {
            line.as_object_mut().unwrap().remove("seconds");
            line
        })
        .collect();
    (
        std::fs::read(dir.join(files::CHECKPOINT_LAST)).unwrap(),
        std::fs::read(dir.join(files::CHECKPOINT_BEST)).ok(),
        log,
    )
}

/// A real `fewshot train` process killed at instants spread over its run (each restart killed 25 %
/// later than the one before, from 0.05 s on, until one ends by itself) ends where a run never
/// killed ends: the node's and the cell's last checkpoints (weights, statistics, momentum, state),
/// the best checkpoint and the log's epochs, byte for byte; no pending best checkpoint is left, and
/// `phases.json` holds the killed processes' training time.
/// Kills land in steps, in validation, between a log line and its commit, between a commit and the
/// best checkpoint's publication.
#[test]
fn a_real_process_killed_at_many_instants_resumes_bit_identically() {
    let small = small_cell(3);
    let node = small.pretrain_node().unwrap();
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("cell.toml");
    std::fs::write(&config, toml::to_string(&small).unwrap()).unwrap();
    let straight = tempfile::tempdir().unwrap();
    assert!(train_process(&config, straight.path(), None));
    let killed = tempfile::tempdir().unwrap();
    // each restart killed a little later than the one before, so that the kills land at new
    // points of the run (in start-up, in every epoch, around commits) until one run ends
    let progress = || {
        [node.hash(), small.hash()].map(|h| {
            let log = killed.path().join(h).join(fewshot::run_files::TRAIN_LOG);
            fewshot::train_log::lines(&log).unwrap().len()
        })
    };
    let mut killed_at = Vec::new();
    let mut after = 0.05;
    while !train_process(&config, killed.path(), Some(after)) {
        killed_at.push(progress());
        assert!(
            killed_at.len() < 40,
            "no end after {} kills",
            killed_at.len()
        );
        after *= 1.25;
    }
    killed_at.dedup();
    assert!(
        killed_at.len() >= 4,
        "kills left the log at only {killed_at:?} (node, cell) lines"
    );
    for hash in [node.hash(), small.hash()] {
        let (a, b) = (straight.path().join(&hash), killed.path().join(&hash));
        assert!(
            end_state(&a) == end_state(&b),
            "{hash}: the resumed end state differs (kills at {killed_at:?})"
        );
        let pending = std::fs::read_dir(&b)
            .unwrap()
            .flatten()
            .filter(|e| {
                fewshot::run_files::pending_best_epochs(&e.file_name().to_string_lossy()).is_some()
            })
            .count();
        assert_eq!(pending, 0, "{hash}: a pending best checkpoint is left");
        // each commit adds its time to phases.json, so killed processes keep what they trained
        let logged = |dir: &std::path::Path| -> f64 {
            let log = fewshot::train_log::lines(&dir.join(fewshot::run_files::TRAIN_LOG));
            log.unwrap()
                .iter()
                .map(|l| l["seconds"].as_f64().unwrap())
                .sum()
        };
        let recorded = |dir: &std::path::Path| {
            let p = fewshot::run_folders::phases(dir).expect("phases.json");
            assert_eq!(p.device, "cpu");
            p.train_seconds.unwrap()
        };
        assert!(
            recorded(&a) >= logged(&a),
            "{hash}: phases.json misses logged time"
        );
        // (a kill between a commit and its record loses that epoch's time: at most a few epochs)
        assert!(
            recorded(&b) >= 0.5 * logged(&b),
            "{hash}: killed runs' time not recorded"
        );
    }
    println!("kills with (node, cell) log lines at {killed_at:?}");
}

/// Two cells that share a pre-training node, started at the same moment as two processes: the
/// node is trained once (its folder's lock), its log holds each epoch once, and both cells finish.
#[test]
fn two_processes_that_share_a_node_train_it_once() {
    let a = small_cell(1);
    let mut b = small_cell(1);
    b.train.episodes_per_epoch = 3;
    assert_eq!(a.pretrain_node(), b.pretrain_node());
    let runs = tempfile::tempdir().unwrap();
    let configs = tempfile::tempdir().unwrap();
    let children: Vec<_> = [("a", &a), ("b", &b)]
        .map(|(name, cell)| {
            let config = configs.path().join(format!("{name}.toml"));
            std::fs::write(&config, toml::to_string(cell).unwrap()).unwrap();
            spawn_train(&config, runs.path())
        })
        .into_iter()
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
    }
    let node = a.pretrain_node().unwrap().hash();
    let log = std::fs::read_to_string(runs.path().join(node).join(fewshot::run_files::TRAIN_LOG));
    assert_eq!(
        log.unwrap().lines().count(),
        2,
        "two pre-training epochs, each logged once"
    );
}
