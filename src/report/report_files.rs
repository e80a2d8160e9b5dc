//! Writes one experiment's report into its profile's folder: `<table>.md` and `<table>.csv` (the
//! accuracy table), `<table>-paired.md`/`.csv` (paired comparisons), `<table>-episodes.csv` (every
//! finished cell's per-episode accuracy, the numbers the table and the tests are computed from),
//! `provenance.json` (table and cells), and the figures under `figures/`. Every file is written atomically.

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
            markdown(
                &rows,
                &titles,
                profile,
                experiment
                    .profile
                    .get(profile)
                    .and_then(|p| p.report_note.as_deref())
            )
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
    put(format!("{name}-episodes.csv"), episodes_csv(results))?;
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
    let groups: Vec<String> = titles.iter().map(|(name, _)| name.clone()).collect();
    let (figures, skipped) = match draw_all(&dir.join("figures"), &rows, results, &groups) {
        Ok(f) => (f, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    files.extend(figures);
    Ok(ReportOutcome {
        files,
        figures_skipped: skipped,
    })
}

/// One line per (finished cell, test episode): `group,method,dataset,shot,seed,cell_hash,episode,accuracy`.
pub fn episodes_csv(results: &[CellResult]) -> String {
    let mut out = String::from("group,method,dataset,shot,seed,cell_hash,episode,accuracy\n");
    for r in results {
        let p = &r.planned;
        for e in r.episodes.iter().flatten() {
            out += &format!(
                "{},{},{},{},{},{},{},{}\n",
                p.group, p.method, p.dataset, p.shot, p.seed, r.hash, e.episode, e.accuracy
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::episode_file::EpisodeAccuracy;
    use crate::report::run_results::{CellStatus, EpochRecord, EvalRecord};

    /// A smoke plan with made-up run results (two methods done, the rest not run).
    #[test]
    fn a_report_marks_missing_cells_and_compares_pairs() {
        let manifests = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests");
        let e = Experiment::read(&manifests, "table1").unwrap();
        let plan = e.plan(&manifests, "smoke").unwrap();
        let results: Vec<CellResult> = plan
            .iter()
            .map(|p| {
                let done = p.group == "controlled"
                    && p.shot == 1
                    && (p.method == "lwfm-spm" || p.method == "protonet");
                let acc = if p.method == "lwfm-spm" { 0.6 } else { 0.5 };
                let episodes: Vec<EpisodeAccuracy> = (0..40)
                    .map(|i| EpisodeAccuracy {
                        episode: i,
                        accuracy: acc + 0.01 * (i % 5) as f64,
                        loss: None,
                    })
                    .collect();
                let stats = crate::eval::stats::mean_ci95(
                    &episodes.iter().map(|e| e.accuracy).collect::<Vec<_>>(),
                );
                CellResult {
                    planned: p.clone(),
                    hash: p.cell.hash(),
                    status: if done {
                        CellStatus::Done
                    } else {
                        CellStatus::NotRun
                    },
                    eval: done.then(|| EvalRecord {
                        cell_hash: p.cell.hash(),
                        dataset: p.dataset.clone(),
                        method: p.method.clone(),
                        shot: p.shot,
                        mean: stats.mean,
                        ci95: stats.ci95,
                        n: 40,
                        ci_formula: e.protocol.ci_formula.clone(),
                        store_fingerprint: "f".into(),
                        episodes_sha256: "e".into(),
                        seed: 1,
                        checkpoint: "checkpoint-best.safetensors".into(),
                        device: "cpu".into(),
                        threads: Some(2),
                        cpu: None,
                        git_commit: Some("checkout".into()),
                        build_commit: (p.method == "lwfm-spm").then(|| "build".into()),
                    }),
                    episodes: done.then_some(episodes),
                    epochs: if done {
                        vec![EpochRecord {
                            epoch: 0,
                            lr: 0.01,
                            mean_loss: 1.0,
                            val_accuracy: 0.5,
                            seconds: 1.0,
                            commit: None,
                        }]
                    } else {
                        Vec::new()
                    },
                    phases: None,
                    node: done.then(|| ("node".into(), None)),
                    train_commits: vec![],
                    train_cpus: vec![],
                }
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let build = BuildInfo {
            git_commit: None,
            git_dirty: None,
            binary_version: "test".into(),
            binary_features: vec![],
            device: "cpu".into(),
            driver: None,
        };
        let out = write_report(dir.path(), &manifests, &e, "smoke", &results, build).unwrap();
        let md = std::fs::read_to_string(dir.path().join("table1.md")).unwrap();
        assert!(
            md.contains("| protonet | Conv-4 | mini-imagenet | 1 | 52.00 ± 0.44 |"),
            "{md}"
        );
        assert!(md.contains("not run"), "cells not run are kept as rows");
        assert!(
            md.contains("| lwfm-spm | Conv-4 | mini-imagenet | 1 | 62.00 ± 0.44 |"),
            "{md}"
        );
        assert!(
            !md.contains('‡'),
            "smoke drops the ImageNet weights, and with them the flag: {md}"
        );
        let csv = std::fs::read_to_string(dir.path().join("table1.csv")).unwrap();
        assert_eq!(
            csv.lines().count(),
            1 + 10,
            "one line per (group, method, dataset, shot)"
        );
        let episodes = std::fs::read_to_string(dir.path().join("table1-episodes.csv")).unwrap();
        assert_eq!(episodes.lines().count(), 1 + 2 * 40, "two finished cells");
        assert!(episodes.contains(",lwfm-spm,mini-imagenet,1,"));
        // the table follows from the per-episode file; one episode changed, it no longer does
        use crate::report::consistency::check_table_against_episodes;
        assert_eq!(
            check_table_against_episodes(dir.path(), "table1").unwrap(),
            2
        );
        let tampered = episodes.replacen(",0,0.5\n", ",0,0.7\n", 1);
        assert_ne!(tampered, episodes);
        std::fs::write(dir.path().join("table1-episodes.csv"), tampered).unwrap();
        let err = check_table_against_episodes(dir.path(), "table1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("table1.csv") && err.contains("protonet mini-imagenet 1-shot"),
            "{err}"
        );
        let paired = std::fs::read_to_string(dir.path().join("table1-paired.csv")).unwrap();
        assert_eq!(
            paired.lines().count(),
            2,
            "lwfm-spm vs protonet, the only pair with results: {paired}"
        );
        assert!(paired.contains(",protonet,0.1"), "{paired}");
        let prov: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("provenance.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(prov["cells"].as_array().unwrap().len(), 10);
        // the build that evaluated where its summary names one, else its checkout; the node named
        let cell = |m: &str| {
            let cells = prov["cells"].as_array().unwrap();
            cells
                .iter()
                .find(|c| c["method"] == m && c["status"] == "done")
                .unwrap()
                .clone()
        };
        assert_eq!(cell("lwfm-spm")["evaluated_at_commit"], "build");
        assert_eq!(cell("protonet")["evaluated_at_commit"], "checkout");
        assert_eq!(cell("protonet")["pretrain_node"]["config_hash"], "node");
        if out.figures_skipped.is_none() {
            assert!(dir.path().join("figures/accuracy-controlled.svg").is_file());
            assert!(dir.path().join("figures/accuracy-controlled.png").is_file());
        }
    }
}
