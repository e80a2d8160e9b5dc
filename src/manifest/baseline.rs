//! `manifests/baselines/ci.toml`: the blessed results the CI accuracy gate (`cargo xtask regress`)
//! compares against, one `[[gate]]` per gate cell, each with the numbers, the tolerance, and who
//! blessed it when, where and why. `cargo xtask regress --bless --reason "..."` rewrites it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CiBaselines {
    /// The rule, in words; printed by every gate run.
    pub rule: String,
    pub gate: Vec<GateBaseline>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GateKind {
    /// A committed checkpoint evaluated on frozen episodes: per-episode results must match.
    Evaluation,
    /// A cell trained from scratch on CPU, then evaluated: the mean must stay within tolerance.
    Training,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateBaseline {
    pub name: String,
    pub kind: GateKind,
    /// The cell config, relative to `manifests/`.
    pub cell: String,
    /// Evaluation gates: the committed checkpoint (relative to `manifests/`) and its SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_sha256: Option<String>,
    /// Evaluation gates: the blessed per-episode accuracies (JSON lines, relative to `manifests/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub episodes: Option<String>,
    /// Blessed mean accuracy (fraction), its 95% CI half-width, and the episode count.
    pub mean: f64,
    pub ci95: f64,
    pub n: usize,
    /// Fail when |now − blessed mean| exceeds this many percentage points.
    pub tolerance_pp: f64,
    /// Evaluation gates: fail when more episodes than this differ from the blessed ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_differing_episodes: Option<usize>,
    /// Evaluation gates: an episode also differs when its mean query cross-entropy moves by more
    /// than this from the blessed file's (where that file records it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_tolerance: Option<f64>,
    pub blessed_commit: String,
    pub blessed_machine: String,
    pub blessed_at: String,
    pub reason: String,
}

impl CiBaselines {
    pub fn read(path: &Path) -> Result<Self> {
        super::read_toml(path)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("plain struct")
    }
}
