//! Writes one experiment's report into its profile's folder: `<table>.md` and `<table>.csv` (the
//! accuracy table), `<table>-paired.md`/`.csv` (paired comparisons), `provenance.json` (table and
//! cells), and the figures under `figures/`. Every file is written atomically.

use std::path::{Path, PathBuf};

use super::accuracy_table::{csv, markdown, table_rows};
use super::paired_section;
use super::plots::draw_all;
use super::provenance::{cell_provenance, file_sha256, BuildInfo, TableProvenance};
use super::run_results::CellResult;
use crate::atomic_write::write_atomically;
use crate::error::Result;
use crate::manifest::experiment::Experiment;
use crate::manifest::references::References;

/// What was written, and a note when the figures could not be drawn.
pub struct ReportOutcome {
    pub files: Vec<PathBuf>,
    pub figures_skipped: Option<String>,
}

pub fn write_report(
    dir: &Path,
    manifests: &Path,
    experiment: &Experiment,
    profile: &str,
    results: &[CellResult],
    build: BuildInfo,
) -> Result<ReportOutcome> {
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    let refs = References::read(manifests, &experiment.name)?;
    let rows = table_rows(results, &refs, &experiment.protocol.ci_formula);
    let titles: Vec<(String, String)> = experiment
        .group
        .iter()
        .map(|g| (g.name.clone(), g.title.clone()))
        .collect();
    let name = &experiment.name;
    let mut files = Vec::new();
    let mut put = |file: String, text: String| -> Result<()> {
        let path = dir.join(file);
        write_atomically(&path, text.as_bytes())?;
        files.push(path);
        Ok(())
    };
    put(
        format!("{name}.md"),
        format!(
            "# {}\n\n{}",
            experiment.title,
            markdown(&rows, &titles, profile)
        ),
    )?;
    put(format!("{name}.csv"), csv(&rows, profile))?;
    let paired = paired_section::paired_rows(results);
    put(
        format!("{name}-paired.md"),
        format!(
            "# {}: paired comparisons\n\n{}",
            experiment.title,
            paired_section::markdown(&paired)
        ),
    )?;
    put(format!("{name}-paired.csv"), paired_section::csv(&paired))?;
    let provenance = TableProvenance {
        experiment: name.clone(),
        profile: profile.to_string(),
        experiment_sha256: file_sha256(&Experiment::path(manifests, name)),
        references_sha256: file_sha256(&manifests.join("references").join(format!("{name}.toml"))),
        build,
        ci_formula: experiment.protocol.ci_formula.clone(),
        cells: results.iter().map(cell_provenance).collect(),
    };
    put(
        "provenance.json".into(),
        serde_json::to_string_pretty(&provenance).expect("plain struct"),
    )?;
    let (figures, skipped) = match draw_all(&dir.join("figures"), &rows, results, &titles) {
        Ok(f) => (f, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    files.extend(figures);
    Ok(ReportOutcome {
        files,
        figures_skipped: skipped,
    })
}
