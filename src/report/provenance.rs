//! `provenance.json`: where every number of a report comes from — for the table: git commit and dirty
//! flag, the `fewshot` binary's version and features, device and driver, profile, the experiment and
//! reference files' hashes; per cell: config hash, dataset fingerprint, episode-file hash, seed,
//! checkpoint, thread count, every commit it was trained under (its pre-training node's included),
//! the commit that evaluated it, and wall time per phase (its shared pre-training node's apart).

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::run_results::{CellResult, PhaseTimes};

/// The machine and build a report was made with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildInfo {
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    /// `fewshot --version` of the binary that ran the cells.
    pub binary_version: String,
    pub binary_features: Vec<String>,
    pub device: String,
    /// `nvidia-smi`'s driver version on a CUDA device.
    pub driver: Option<String>,
}

impl BuildInfo {
    /// The build and machine behind a report: the checkout at `root`, `binary --version`, and the
    /// driver that `nvidia-smi` reports on a CUDA device.
    pub fn collect(root: &Path, binary: &Path, device: &str) -> Self {
        let run = |cmd: &mut std::process::Command| {
            cmd.output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let cuda = device.starts_with("cuda");
        let version = run(std::process::Command::new(binary).arg("--version"))
            .unwrap_or_else(|| "unknown".into());
        let driver = cuda
            .then(|| {
                run(std::process::Command::new("nvidia-smi")
                    .args(["--query-gpu=driver_version", "--format=csv,noheader"]))
            })
            .flatten();
        let mut features = vec!["train".to_string()];
        if cuda {
            features.push("cuda".into());
        }
        BuildInfo {
            git_commit: crate::git_state::git_commit(root),
            git_dirty: crate::git_state::git_dirty(root),
            binary_version: version,
            binary_features: features,
            device: device.to_string(),
            driver,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellProvenance {
    pub group: String,
    pub method: String,
    pub dataset: String,
    pub shot: usize,
    pub seed: u64,
    pub config_hash: String,
    pub status: String,
    pub store_fingerprint: Option<String>,
    pub episodes_sha256: Option<String>,
    pub checkpoint: Option<String>,
    pub threads: Option<usize>,
    /// The builds that trained it, in order (pre-training node first).
    pub trained_at_commits: Vec<String>,
    /// The processors that trained it on the CPU, in order (not recorded before 2026-12-07): the
    /// rounding of CPU training depends on the processor's vector extensions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trained_on_cpus: Vec<String>,
    /// The commit of the build that evaluated it (for summaries written before 2026-12-08: the
    /// commit checked out where it was evaluated).
    pub evaluated_at_commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluated_on_cpu: Option<String>,
    /// Its phases' wall time: its episodic stage and its test evaluation (`PhaseTimes` says what
    /// older folders counted).
    pub phases: Option<PhaseTimes>,
    /// The shared pre-training node it started from, with the node's wall time (spent once for all
    /// the cells that name it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pretrain_node: Option<NodeProvenance>,
}

/// A cell's shared pre-training node: its config hash and phase times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeProvenance {
    pub config_hash: String,
    pub phases: Option<PhaseTimes>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableProvenance {
    pub experiment: String,
    pub profile: String,
    pub experiment_sha256: String,
    pub references_sha256: String,
    pub build: BuildInfo,
    pub ci_formula: String,
    pub cells: Vec<CellProvenance>,
}

/// A report's `provenance.json` read back (None where there is none or it does not parse): what
/// `reproduce --dry-run` takes a cell's recorded time from on a clone that has not trained it.
pub fn read(path: &Path) -> Option<TableProvenance> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// SHA-256 of a file's bytes ("missing" when it cannot be read).
pub fn file_sha256(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| hex::encode(Sha256::digest(&b)))
        .unwrap_or_else(|_| "missing".into())
}

pub fn cell_provenance(r: &CellResult) -> CellProvenance {
    let e = r.eval.as_ref();
    CellProvenance {
        group: r.planned.group.clone(),
        method: r.planned.method.clone(),
        dataset: r.planned.dataset.clone(),
        shot: r.planned.shot,
        seed: r.planned.seed,
        config_hash: r.hash.clone(),
        status: match &r.status {
            super::run_results::CellStatus::Done => "done".into(),
            super::run_results::CellStatus::Failed { log } => {
                format!("failed (log: {})", log.display())
            }
            super::run_results::CellStatus::NotRun => "not run".into(),
        },
        store_fingerprint: e.map(|e| e.store_fingerprint.clone()),
        episodes_sha256: e.map(|e| e.episodes_sha256.clone()),
        checkpoint: e.map(|e| e.checkpoint.clone()),
        threads: e.and_then(|e| e.threads),
        trained_at_commits: r.train_commits.clone(),
        trained_on_cpus: r.train_cpus.clone(),
        // the build that evaluated; summaries written before it was recorded name their checkout
        evaluated_at_commit: e
            .and_then(|e| e.build_commit.clone().or_else(|| e.git_commit.clone())),
        evaluated_on_cpu: e.and_then(|e| e.cpu.clone()),
        phases: r.phases.clone(),
        pretrain_node: r.node.as_ref().map(|(hash, phases)| NodeProvenance {
            config_hash: hash.clone(),
            phases: phases.clone(),
        }),
    }
}
