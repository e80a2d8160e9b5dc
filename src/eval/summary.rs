//! `eval.json`: the summary of one evaluation (mean, 95% CI and its formula) with the provenance every
//! reported number carries. Plain serde, so reports read it without the deep-learning code.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalSummary {
    pub cell_hash: String,
    pub dataset: String,
    pub method: String,
    pub shot: usize,
    pub mean: f64,
    pub ci95: f64,
    pub n: usize,
    pub ci_formula: String,
    pub store_fingerprint: String,
    pub episodes_sha256: String,
    pub seed: u64,
    /// `checkpoint-best.safetensors`, `untrained`, or the checkpoint file evaluated.
    pub checkpoint: String,
    pub device: String,
    /// Worker threads (the order of floating-point reductions on CPU depends on it).
    pub threads: usize,
    pub git_commit: Option<String>,
}
