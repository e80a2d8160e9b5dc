//! The paired-comparison section of a report: within each row group, dataset and shot, LWFM-SPM
//! against every other method, on the per-episode accuracies of the same frozen episodes (checked:
//! same episode file hash and episode indices), with Holm's correction over that family.

use serde::Serialize;

use super::paired_tests::{holm_in_place, paired_comparison, PairedComparison};
use super::run_results::CellResult;

/// The method every other one is compared with.
pub const FOCUS_METHOD: &str = "lwfm-spm";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedRow {
    pub group: String,
    pub dataset: String,
    pub shot: usize,
    pub seed: u64,
    pub baseline: String,
    pub comparison: PairedComparison,
}

/// Every comparison that both sides have results for (one per seed).
pub fn paired_rows(results: &[CellResult]) -> Vec<PairedRow> {
    let mut rows = Vec::new();
    for focus in results.iter().filter(|r| r.planned.method == FOCUS_METHOD) {
        let (Some(fe), Some(fx)) = (&focus.eval, &focus.episodes) else {
            continue;
        };
        let mut family: Vec<PairedRow> = Vec::new();
        for other in results.iter().filter(|o| {
            o.planned.method != FOCUS_METHOD
                && o.planned.group == focus.planned.group
                && o.planned.dataset == focus.planned.dataset
                && o.planned.shot == focus.planned.shot
                && o.planned.seed == focus.planned.seed
        }) {
            let (Some(oe), Some(ox)) = (&other.eval, &other.episodes) else {
                continue;
            };
            let same_episodes = oe.episodes_sha256 == fe.episodes_sha256
                && ox.len() == fx.len()
                && ox
                    .iter()
                    .zip(fx.iter())
                    .all(|(a, b)| a.episode == b.episode);
            if !same_episodes {
                continue;
            }
            let a: Vec<f64> = fx.iter().map(|r| r.accuracy).collect();
            let b: Vec<f64> = ox.iter().map(|r| r.accuracy).collect();
            family.push(PairedRow {
                group: focus.planned.group.clone(),
                dataset: focus.planned.dataset.clone(),
                shot: focus.planned.shot,
                seed: focus.planned.seed,
                baseline: other.planned.method.clone(),
                comparison: paired_comparison(&a, &b),
            });
        }
        let mut comparisons: Vec<PairedComparison> =
            family.iter().map(|r| r.comparison.clone()).collect();
        holm_in_place(&mut comparisons);
        for (row, c) in family.iter_mut().zip(comparisons) {
            row.comparison = c;
        }
        rows.extend(family);
    }
    rows
}

pub fn markdown(rows: &[PairedRow]) -> String {
    if rows.is_empty() {
        return "No paired comparison yet: it needs LWFM-SPM and another method of the same row group evaluated on the same episodes.\n".into();
    }
    let mut out = String::from("LWFM-SPM − baseline, per episode on identical frozen episodes: mean difference ± 95% CI (points), paired t-test and Wilcoxon signed-rank test (two-sided), p-values Holm-corrected over the baselines of each group, dataset and shot.\n\n| group | dataset | shot | seed | vs | Δ ± CI | n | t | p (t, Holm) | p (Wilcoxon, Holm) |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let c = &r.comparison;
        out += &format!(
            "| {} | {} | {} | {} | {} | {:+.2} ± {:.2} | {} | {:.2} | {:.2e} | {:.2e} |\n",
            r.group,
            r.dataset,
            r.shot,
            r.seed,
            r.baseline,
            100.0 * c.mean_difference,
            100.0 * c.ci95,
            c.n,
            c.t_statistic,
            c.t_p_holm,
            c.wilcoxon_p_holm
        );
    }
    out
}

pub fn csv(rows: &[PairedRow]) -> String {
    let mut out = String::from("group,dataset,shot,seed,focus,baseline,mean_difference,ci95,n,t,t_p,t_p_holm,wilcoxon_p,wilcoxon_p_holm\n");
    for r in rows {
        let c = &r.comparison;
        out += &format!(
            "{},{},{},{},{FOCUS_METHOD},{},{},{},{},{},{},{},{},{}\n",
            r.group,
            r.dataset,
            r.shot,
            r.seed,
            r.baseline,
            c.mean_difference,
            c.ci95,
            c.n,
            c.t_statistic,
            c.t_p_value,
            c.t_p_holm,
            c.wilcoxon_p_value,
            c.wilcoxon_p_holm
        );
    }
    out
}
