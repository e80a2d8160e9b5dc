//! The CI accuracy gate's evaluation gates, in-process and on real data: each committed checkpoint
//! (manifests/baselines/ci/, trained by the suite) evaluated on its frozen test episodes (Omniglot,
//! grey; miniImageNet at 84×84, RGB) passes the rule of `fewshot::eval::gate` against its blessed
//! per-episode file, and each sabotage switch of `fewshot::sabotage` that the gate is meant to see,
//! flipped in the real code path, turns it red.

use std::path::PathBuf;

use candle_core::Device;
use fewshot::eval::cell_eval::{eval_cell, Weights};
use fewshot::eval::episode_file::read_episode_accuracies;
use fewshot::eval::gate::{judge, GateVerdict};
use fewshot::manifest::baseline::{CiBaselines, GateKind};
use fewshot::manifest::cell::CellConfig;
use fewshot::model::run_context::RunPaths;
use fewshot::sabotage::Sabotage;

use crate::real_data::prepared_data_dir;

fn manifests() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

const OMNIGLOT: &str = "eval/omniglot-conv4-lwfm-spm-5w1s";
const MINI_RGB: &str = "eval/mini-imagenet-84-conv4-protonet-5w1s";

/// The prefixes of a gate's episodes a sabotage is judged on, in turn, before the whole gate
/// (`sabotaged_gates_fail`).
const PREFIXES: [usize; 2] = [15, 30];

/// Evaluates the checkpoint of the evaluation gate `name` with `sabotage` and judges it; with
/// `first` only on that many of its episodes, against as many blessed ones (the verdict's count of
/// differing episodes is then the prefix's; its `pass` says nothing).
fn evaluation_gate(name: &str, sabotage: Option<Sabotage>, first: Option<usize>) -> GateVerdict {
    fewshot::threads::pin_thread_count();
    let baselines = CiBaselines::read(&manifests().join("baselines/ci.toml")).unwrap();
    let gate = baselines
        .gate
        .iter()
        .find(|g| g.kind == GateKind::Evaluation && g.name == name)
        .unwrap_or_else(|| panic!("ci.toml has the evaluation gate {name}"));
    let text = std::fs::read_to_string(manifests().join(&gate.cell)).unwrap();
    let mut cell = CellConfig::from_toml(&text).unwrap();
    cell.sabotage = sabotage;
    if let Some(n) = first {
        cell.eval.test_episodes = n;
    }
    let runs = tempfile::tempdir().unwrap();
    let paths = RunPaths {
        data_dir: prepared_data_dir(),
        manifests: manifests(),
        runs: runs.path().to_path_buf(),
    };
    let checkpoint = manifests().join(gate.checkpoint.as_ref().unwrap());
    eval_cell(
        &cell,
        &paths,
        &Device::Cpu,
        &Weights::File(checkpoint.clone()),
    )
    .unwrap();
    let stem = checkpoint.file_stem().unwrap().to_string_lossy();
    let now = read_episode_accuracies(
        &runs
            .path()
            .join(cell.hash())
            .join(format!("episodes-{stem}.jsonl")),
    )
    .unwrap();
    let blessed =
        read_episode_accuracies(&manifests().join(gate.episodes.as_ref().unwrap())).unwrap();
    let blessed = &blessed[..first.unwrap_or(blessed.len()).min(blessed.len())];
    judge(gate, Some(blessed), &now, cell.episode.n_way)
}

#[test]
fn the_committed_checkpoints_pass_the_evaluation_gates() {
    for name in [OMNIGLOT, MINI_RGB] {
        let verdict = evaluation_gate(name, None, None);
        println!("{verdict:?}");
        assert!(verdict.pass, "{verdict:?}");
    }
}

#[test]
fn every_sabotage_turns_the_omniglot_evaluation_gate_red() {
    let grey = Sabotage::ALL
        .into_iter()
        .filter(|s| !Sabotage::PIXELS.contains(s));
    sabotaged_gates_fail(OMNIGLOT, grey);
}

/// The faults of colour, normalisation, crop and decoding, which the Omniglot gate cannot see.
#[test]
fn every_pixel_sabotage_turns_the_rgb_evaluation_gate_red() {
    sabotaged_gates_fail(MINI_RGB, Sabotage::PIXELS.into_iter());
}

/// Each sabotage turns `gate` red. Judged on the first [`PREFIXES`] episodes first: the gate compares
/// episode by episode, and an episode's record does not depend on how many are evaluated, so when
/// more of a prefix's episodes differ than the gate allows, the whole gate is red for sure; only a
/// sabotage no prefix decides runs the whole gate. With the gates' `loss_tolerance` every sabotage
/// moves the loss of nearly every episode and is decided by the first 15 (measured on the first 30
/// and 60: the decoder's off-by-one moves 29 of 30 colour episodes' loss by more than 1e-5 while it
/// flips a prediction in 2; candle's stock ops instead of the fast ones, rounding only, move none
/// by more than 1.5e-7).
fn sabotaged_gates_fail(gate: &str, sabotages: impl Iterator<Item = Sabotage>) {
    let baselines = CiBaselines::read(&manifests().join("baselines/ci.toml")).unwrap();
    let allowed = (baselines.gate.iter().find(|g| g.name == gate))
        .and_then(|g| g.max_differing_episodes)
        .unwrap_or(0);
    for sabotage in sabotages {
        let decided_on = PREFIXES.into_iter().find_map(|first| {
            let verdict = evaluation_gate(gate, Some(sabotage), Some(first));
            (verdict.differing_episodes.is_some_and(|d| d > allowed))
                .then(|| (verdict, format!("the first {first} episodes")))
        });
        let decided = decided_on.is_some();
        let (verdict, on) = decided_on.unwrap_or_else(|| {
            (
                evaluation_gate(gate, Some(sabotage), None),
                "the whole gate".into(),
            )
        });
        println!(
            "{gate} {} on {on}: {:.2}% (Δ {:+.2} points, {:?} episodes differ): {}",
            sabotage.name(),
            100.0 * verdict.now_mean,
            verdict.delta_pp,
            verdict.differing_episodes,
            if decided || !verdict.pass {
                "fail"
            } else {
                "pass"
            }
        );
        assert!(
            decided || !verdict.pass,
            "{}: the gate did not notice: {verdict:?}",
            sabotage.name()
        );
    }
}
