//! The report of a plan's cells as their run folders stand: what `cargo xtask reproduce` writes after
//! running the cells itself, and what a Slurm report job writes with `fewshot report` once the job array
//! is over. One function for both executors, so their reports are the same files.

use std::path::{Path, PathBuf};

use super::provenance::BuildInfo;
use super::report_files::{write_report, ReportOutcome};
use super::run_results::CellResult;
use crate::error::Result;
use crate::manifest::experiment::{Experiment, PlannedCell};

/// How a cell without a result is reported.
pub enum Missing<'a> {
    /// Only the cells listed (plan index, log) failed; the others were not run.
    Failed(&'a [(usize, PathBuf)]),
    /// Every cell without a result failed, with its run folder's `reproduce.log` (a report job that
    /// runs after all the plan's cells were submitted).
    AllFailed,
}

/// A plan whose run folders are to be reported.
pub struct PlanRuns<'a> {
    pub manifests: &'a Path,
    pub experiment: &'a Experiment,
    pub profile: &'a str,
    pub plan: &'a [PlannedCell],
    pub runs: &'a Path,
}

/// Loads every planned cell's results from its run folder and writes the report into `out`.
pub fn report_plan(
    out: &Path,
    p: PlanRuns,
    missing: Missing,
    build: BuildInfo,
) -> Result<ReportOutcome> {
    let results: Vec<CellResult> = p
        .plan
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let dir = p.runs.join(c.cell.hash());
            let log = match &missing {
                Missing::Failed(failed) => {
                    failed.iter().find(|(i, _)| *i == k).map(|(_, l)| l.clone())
                }
                Missing::AllFailed => (!dir.join(crate::run_files::EVAL).is_file())
                    .then(|| dir.join(crate::run_files::REPRODUCE_LOG)),
            };
            CellResult::load(p.runs, c, log.as_deref())
        })
        .collect::<Result<_>>()?;
    write_report(out, p.manifests, p.experiment, p.profile, &results, build)
}
