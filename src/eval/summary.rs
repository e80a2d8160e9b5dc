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
    /// Worker threads (the order of floating-point reductions on CPU depends on it); `None` in the
    /// summaries of early runs, which did not record it (they still read).
    #[serde(default)]
    pub threads: Option<usize>,
    /// The processor that ran it (`threads::cpu_description`); absent in summaries written before
    /// 2026-12-07.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// The commit checked out where the manifests were read (the experiment and cell definitions).
    pub git_commit: Option<String>,
    /// The commit the `fewshot` binary that evaluated was built from (`git_state::BUILD_COMMIT`; with
    /// `reproduce --binary` another than `git_commit`); absent in summaries written before 2026-12-08.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_commit: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_early_summary_without_its_thread_count_cpu_or_build_still_reads() {
        let early = r#"{"cell_hash":"h","dataset":"mini-imagenet","method":"protonet","shot":1,
            "mean":0.5,"ci95":0.01,"n":2000,"ci_formula":"1.96*std/sqrt(n)","store_fingerprint":"f",
            "episodes_sha256":"e","seed":1,"checkpoint":"checkpoint-best.safetensors","device":"cpu",
            "git_commit":null}"#;
        let read: EvalSummary = serde_json::from_str(early).unwrap();
        assert_eq!(read.threads, None);
        assert_eq!(read.cpu, None);
        assert_eq!(read.build_commit, None);
        assert!(!serde_json::to_string(&read).unwrap().contains(r#""cpu":"#));
        let now = EvalSummary {
            threads: Some(2),
            cpu: Some("AMD EPYC (avx2 fma)".into()),
            build_commit: Some("134ae47".into()),
            ..read
        };
        let text = serde_json::to_string(&now).unwrap();
        assert!(text.contains(r#""threads":2"#));
        assert!(text.contains(r#""cpu":"AMD EPYC (avx2 fma)""#));
        assert!(text.contains(r#""build_commit":"134ae47""#));
        assert_eq!(serde_json::from_str::<EvalSummary>(&text).unwrap(), now);
    }
}
