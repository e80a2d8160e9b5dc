//! Real learning on real data, on CPU: a training run (shared pre-training node + episodic) stopped
//! after an epoch (inside the node, or between a checkpoint and its `state.json`) resumes to a
//! bit-identical end state (real processes killed: `killed_processes`); cells share their
//! pre-training node, and the cosine and DeepEMD-style heads train and evaluate.
//! The full CI cells (Conv-4 ProtoNet and LWFM-SPM on Omniglot and on miniImageNet at 32×32) are
//! trained by the accuracy gate, `cargo xtask regress`, against their blessed baselines.

use std::path::PathBuf;

use candle_core::Device;
use fewshot::eval::cell_eval::{eval_cell, Weights};
use fewshot::manifest::cell::CellConfig;
use fewshot::model::run_context::RunPaths;
use fewshot::train::trainer::train_cell;

use crate::real_data::prepared_data_dir;

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cell(name: &str) -> CellConfig {
    let text = std::fs::read_to_string(repo().join("manifests/cells/ci").join(name)).unwrap();
    CellConfig::from_toml(&text).unwrap()
}

fn paths(runs: &std::path::Path) -> RunPaths {
    fewshot::threads::pin_thread_count();
    RunPaths {
        data_dir: prepared_data_dir(),
        manifests: repo().join("manifests"),
        runs: runs.to_path_buf(),
    }
}

/// A CI cell cut small: a shared pre-training node of two epochs of three batches, then
/// `episodic_epochs` episodic epochs of four episodes with validation on three.
pub(crate) fn small_cell(episodic_epochs: usize) -> CellConfig {
    let mut small = cell("omniglot-conv4-lwfm-spm-5w1s.toml");
    small.train.epochs = episodic_epochs;
    small.train.episodes_per_epoch = 4;
    small.train.milestones = vec![1];
    small.train.val_episodes = 3;
    small.train.aux_batch = 8;
    small.train.pretrain = Some(fewshot::manifest::cell::PretrainConfig {
        epochs: 2,
        batches_per_epoch: 3,
        batch: 8,
        lr: 0.05,
        milestones: vec![1],
        gamma: 0.1,
        classifier_pool: 1,
    });
    small
}

#[test]
fn a_killed_run_resumes_bit_identically() {
    // with a shared pre-training node first, killed inside it and between the stages' epochs
    let small = small_cell(2);
    let node = small.pretrain_node().unwrap();
    let straight = tempfile::tempdir().unwrap();
    let resumed = tempfile::tempdir().unwrap();
    train_cell(&small, &paths(straight.path()), &Device::Cpu, None).unwrap();
    let inside = train_cell(&small, &paths(resumed.path()), &Device::Cpu, Some(1)).unwrap();
    assert_eq!(
        (inside.cell_hash.as_str(), inside.pretrain_epochs_done),
        (node.hash().as_str(), 1),
        "stopped as if killed after the node's first pre-training epoch"
    );
    assert!(!resumed.path().join(small.hash()).exists());
    let first = train_cell(&small, &paths(resumed.path()), &Device::Cpu, Some(2)).unwrap();
    assert_eq!(
        first.epochs_done, 1,
        "stopped as if killed after pre-training and one episodic epoch"
    );
    // a kill between the checkpoint's rename and `state.json`'s leaves the copy an epoch behind:
    // the state inside the checkpoint is the one that counts
    let state_json = resumed.path().join(small.hash()).join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_json).unwrap()).unwrap();
    state["epochs_done"] = 0.into();
    std::fs::write(&state_json, serde_json::to_vec(&state).unwrap()).unwrap();
    // and a kill that wrote epoch 2's best weights before its commit: the resume drops them
    use fewshot::run_files::{pending_best, CHECKPOINT_BEST, CHECKPOINT_LAST};
    let dir = resumed.path().join(small.hash());
    let never_committed = b"weights of an epoch never committed";
    std::fs::write(dir.join(pending_best(2)), never_committed).unwrap();
    let temporary = dir.join(".state.json.999-0.tmp");
    std::fs::write(&temporary, b"a state write a kill cut off").unwrap();
    let best_before = std::fs::read(dir.join(CHECKPOINT_BEST)).unwrap();
    // a resume that trains nothing settles them: the pending file and the temporary one go, the
    // published best stays
    train_cell(&small, &paths(resumed.path()), &Device::Cpu, Some(0)).unwrap();
    assert!(!dir.join(pending_best(2)).exists() && !temporary.exists());
    assert!(std::fs::read(dir.join(CHECKPOINT_BEST)).unwrap() == best_before);
    let second = train_cell(&small, &paths(resumed.path()), &Device::Cpu, None).unwrap();
    assert_eq!(second.epochs_done, 2);
    assert!(!dir.join(pending_best(2)).exists());
    for (hash, file) in [
        (node.hash(), CHECKPOINT_LAST),
        (small.hash(), CHECKPOINT_LAST),
        (small.hash(), CHECKPOINT_BEST),
    ] {
        let read = |dir: &std::path::Path| std::fs::read(dir.join(&hash).join(file)).unwrap();
        assert!(
            read(straight.path()) == read(resumed.path()),
            "{hash}: the resumed run's {file} differs"
        );
    }
}

/// A kill after an epoch's commit and before its best checkpoint's publication: the resume publishes
/// it (a cell without a node, whose first epoch is its first best). The run ends with the best and
/// last checkpoints of a run never stopped.
#[test]
fn a_best_checkpoint_cut_off_by_a_kill_is_published_on_resume() {
    use fewshot::run_files::{pending_best, CHECKPOINT_BEST, CHECKPOINT_LAST};
    let mut small = small_cell(2);
    small.train.pretrain = None;
    small.eval.test_episodes = 5;
    let straight = tempfile::tempdir().unwrap();
    let resumed = tempfile::tempdir().unwrap();
    train_cell(&small, &paths(straight.path()), &Device::Cpu, None).unwrap();
    let first = train_cell(&small, &paths(resumed.path()), &Device::Cpu, Some(1)).unwrap();
    assert_eq!((first.epochs_done, first.best_epoch), (1, Some(0)));
    let dir = resumed.path().join(small.hash());
    let cut_off = std::fs::read(dir.join(CHECKPOINT_BEST)).unwrap();
    std::fs::rename(dir.join(CHECKPOINT_BEST), dir.join(pending_best(1))).unwrap();
    // an evaluation of the folder publishes it first (it never reads an older best)
    let evaluated = fewshot::eval::cell_eval::eval_cell(
        &small,
        &paths(resumed.path()),
        &Device::Cpu,
        &fewshot::eval::cell_eval::Weights::BestOfRun,
    );
    assert!(evaluated.is_ok(), "{:?}", evaluated.err());
    assert!(!dir.join(pending_best(1)).exists());
    assert!(std::fs::read(dir.join(CHECKPOINT_BEST)).unwrap() == cut_off);
    // and so does a resume that trains nothing
    std::fs::rename(dir.join(CHECKPOINT_BEST), dir.join(pending_best(1))).unwrap();
    train_cell(&small, &paths(resumed.path()), &Device::Cpu, Some(0)).unwrap();
    assert!(!dir.join(pending_best(1)).exists());
    assert!(std::fs::read(dir.join(CHECKPOINT_BEST)).unwrap() == cut_off);
    train_cell(&small, &paths(resumed.path()), &Device::Cpu, None).unwrap();
    for file in [CHECKPOINT_LAST, CHECKPOINT_BEST] {
        let read =
            |runs: &std::path::Path| std::fs::read(runs.join(small.hash()).join(file)).unwrap();
        assert!(
            read(straight.path()) == read(resumed.path()),
            "{file} differs"
        );
    }
}

/// A CI cell with a short pre-training node (one epoch of two batches of 8) and no episodic epoch.
fn pretraining_only(name: &str, classifier_pool: usize) -> CellConfig {
    let mut c = cell(name);
    c.train.epochs = 0;
    c.train.val_episodes = 0;
    c.train.pretrain = Some(fewshot::manifest::cell::PretrainConfig {
        epochs: 1,
        batches_per_epoch: 2,
        batch: 8,
        lr: 0.05,
        milestones: vec![],
        gamma: 0.1,
        classifier_pool,
    });
    c
}

/// The last checkpoint of `c`'s pre-training node in the run folders under `runs`.
fn node_checkpoint(runs: &std::path::Path, c: &CellConfig) -> PathBuf {
    let node = c.pretrain_node().unwrap().hash();
    runs.join(node).join(fewshot::run_files::CHECKPOINT_LAST)
}

/// A pre-training node whose classifier reads the flattened map (SimpleShot's Conv-4): at 32×32 the
/// last block is 2×2, so `fc` reads 4 × 64 inputs; its checkpoint scores with a cell's head; a pool
/// larger than the map is refused with the fix.
#[test]
fn a_flattened_classifier_pretrains_and_its_node_scores_with_a_cell_head() {
    let mut c = pretraining_only("mini-imagenet-conv4-protonet-5w5s.toml", 2);
    c.eval.test_episodes = 5;
    let runs = tempfile::tempdir().unwrap();
    let paths = paths(runs.path());
    train_cell(&c, &paths, &Device::Cpu, None).unwrap();
    let checkpoint = node_checkpoint(runs.path(), &c);
    let tensors = candle_core::safetensors::load(&checkpoint, &Device::Cpu).unwrap();
    assert_eq!(tensors["fc.weight"].dims(), &[64, 4 * 64]);
    let scored = eval_cell(&c, &paths, &Device::Cpu, &Weights::File(checkpoint)).unwrap();
    assert_eq!(scored.n, 5);
    let mut too_big = c.clone();
    too_big.train.pretrain.as_mut().unwrap().classifier_pool = 3;
    let e = train_cell(&too_big, &paths, &Device::Cpu, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("last block is 2×2") && e.contains("at most 2"),
        "{e}"
    );
}

/// A node folder written before a node's test transform became the identity (d0f3750) holds its
/// cells' `test_resize` in its `cell.toml`: trained (or resumed) from that config, it is still a node
/// and trains in its own folder, not a node of the new hash, the same bytes as that node.
#[test]
fn a_node_config_written_before_the_test_transform_rule_trains_in_its_own_folder() {
    let mut c = pretraining_only("mini-imagenet-conv4-protonet-5w5s.toml", 1);
    c.train.augment = "pad-crop".into();
    let mut old = c.pretrain_node().unwrap();
    old.test_resize = old.image_size + 4;
    assert!(old.is_pretrain_node());
    assert_ne!(old.hash(), c.pretrain_node().unwrap().hash());
    let runs = tempfile::tempdir().unwrap();
    let outcome = train_cell(&old, &paths(runs.path()), &Device::Cpu, None).unwrap();
    assert_eq!(
        (outcome.pretrain_epochs_done, outcome.pretrain_epochs),
        (1, 1)
    );
    let folders: Vec<String> = std::fs::read_dir(runs.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(folders, vec![old.hash()]);
    // and it trains what the node of the new hash trains: a pad-crop node never reads the test
    // transform (why it is not part of the node), so weights and momentum are byte-identical
    let other = tempfile::tempdir().unwrap();
    train_cell(&c, &paths(other.path()), &Device::Cpu, None).unwrap();
    let load = |dir: &std::path::Path, hash: String| {
        let file = dir.join(hash).join(fewshot::run_files::CHECKPOINT_LAST);
        candle_core::safetensors::load(file, &Device::Cpu).unwrap()
    };
    let (a, b) = (
        load(runs.path(), old.hash()),
        load(other.path(), c.pretrain_node().unwrap().hash()),
    );
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        if name == "train_state.json" {
            continue; // it names the cell's hash
        }
        let bytes = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(bytes(t), bytes(&b[name]), "{name}");
    }
}

/// Cells that differ only in head, shot, taps or episodic schedule start from one pre-training
/// node, run once: the second cell finds it done and takes its backbone as it is.
#[test]
fn cells_share_their_pretraining_node() {
    let a = pretraining_only("omniglot-conv4-protonet-5w1s.toml", 1);
    let mut b = a.clone();
    b.head = fewshot::manifest::model::HeadConfig::Cosine {
        temperature: 0.2,
        flatten: false,
    };
    b.backbone.taps = vec![3, 4];
    b.episode.n_shot = 5;
    b.train.lr *= 2.0;
    let node = a.pretrain_node().unwrap();
    assert_eq!(b.pretrain_node().as_ref(), Some(&node));
    assert_ne!(a.hash(), b.hash());
    let runs = tempfile::tempdir().unwrap();
    let paths = paths(runs.path());
    train_cell(&a, &paths, &Device::Cpu, None).unwrap();
    let node_checkpoint = node_checkpoint(runs.path(), &a);
    let written = std::fs::metadata(&node_checkpoint)
        .unwrap()
        .modified()
        .unwrap();
    let outcome = train_cell(&b, &paths, &Device::Cpu, None).unwrap();
    assert_eq!(outcome.epochs_run, 0, "the node ran again");
    assert_eq!(
        std::fs::metadata(&node_checkpoint)
            .unwrap()
            .modified()
            .unwrap(),
        written
    );
    // no episodic epoch: the cell's backbone is the node's, bit for bit
    let load = |p: &std::path::Path| candle_core::safetensors::load(p, &Device::Cpu).unwrap();
    let (pre, cell_b) = (
        load(&node_checkpoint),
        load(
            &runs
                .path()
                .join(b.hash())
                .join(fewshot::run_files::CHECKPOINT_LAST),
        ),
    );
    let backbone: Vec<&String> = pre.keys().filter(|k| k.starts_with("backbone.")).collect();
    assert!(backbone.len() >= 16);
    for k in backbone {
        let (x, y) = (
            pre[k].flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            cell_b[k].flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert_eq!(x, y, "{k}");
    }
    // with validation, the starting point competes in model selection: before any episodic epoch
    // it is the best checkpoint, and its line in the log is not read as an epoch
    let mut c = b.clone();
    c.train.val_episodes = 4;
    assert_eq!(c.pretrain_node().as_ref(), Some(&node));
    let outcome = train_cell(&c, &paths, &Device::Cpu, None).unwrap();
    assert!(outcome.best_val.is_some_and(|v| (0.0..=1.0).contains(&v)));
    assert_eq!(outcome.best_epoch, None);
    let dir = runs.path().join(c.hash());
    assert!(dir.join("checkpoint-best.safetensors").is_file());
    let log = std::fs::read_to_string(dir.join("train-log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 1);
    assert!(log.contains(r#""stage":"start""#), "{log}");
    assert!(fewshot::report::run_results::read_train_log(&dir)
        .unwrap()
        .is_empty());
}

#[test]
fn a_sinkhorn_head_without_a_positive_epsilon_is_refused() {
    let mut c = cell("omniglot-conv4-protonet-5w1s.toml");
    for (epsilon, iterations) in [(0.0, 100), (f64::NAN, 100), (-0.1, 100), (0.05, 0)] {
        c.head = fewshot::manifest::model::HeadConfig::Deepemd {
            temperature: 12.5,
            sfc: None,
            sinkhorn: Some(fewshot::manifest::model::SinkhornConfig {
                epsilon,
                iterations,
            }),
        };
        let err = c.validate().unwrap_err();
        assert!(err.contains("head.sinkhorn needs epsilon > 0"), "{err}");
    }
    // and the exact head's hash does not change with the new option absent
    let mut exact = c.clone();
    exact.head = fewshot::manifest::model::HeadConfig::default_for("deepemd").unwrap();
    assert!(!serde_json::to_string(&exact).unwrap().contains("sinkhorn"));
}

#[test]
fn the_cosine_and_deepemd_heads_train_and_evaluate_too() {
    // short runs: the point is that every head goes through the same loop, backward pass included
    let runs = tempfile::tempdir().unwrap();
    let paths = paths(runs.path());
    let base = cell("omniglot-conv4-protonet-5w1s.toml");
    let heads = [
        (
            fewshot::manifest::model::HeadConfig::Cosine {
                temperature: 0.2,
                flatten: false,
            },
            vec![4],
            1,
        ),
        (
            fewshot::manifest::model::HeadConfig::Deepemd {
                temperature: 12.5,
                sfc: None,
                sinkhorn: None,
            },
            vec![3],
            3,
        ),
        (
            fewshot::manifest::model::HeadConfig::Deepemd {
                temperature: 12.5,
                sfc: None,
                sinkhorn: Some(fewshot::manifest::model::SinkhornConfig {
                    epsilon: 0.05,
                    iterations: 100,
                }),
            },
            vec![3],
            3,
        ),
    ];
    for (head, taps, pool) in heads {
        let mut c = base.clone();
        c.head = head;
        c.backbone.taps = taps;
        c.backbone.pool = pool;
        c.train.epochs = 1;
        c.train.episodes_per_epoch = 30;
        c.train.milestones = vec![];
        c.train.val_episodes = 10;
        c.eval.test_episodes = 50;
        let untrained = eval_cell(&c, &paths, &Device::Cpu, &Weights::Untrained).unwrap();
        let outcome = train_cell(&c, &paths, &Device::Cpu, None).unwrap();
        assert_eq!(outcome.global_step, 30);
        let trained = eval_cell(&c, &paths, &Device::Cpu, &Weights::BestOfRun).unwrap();
        println!(
            "{}: untrained {:.3}, trained {:.3}",
            c.head.name(),
            untrained.mean,
            trained.mean
        );
        assert_eq!(trained.n, 50);
        assert!(
            trained.mean - trained.ci95 > 0.2,
            "{}: {trained:?}",
            c.head.name()
        );
    }
}
