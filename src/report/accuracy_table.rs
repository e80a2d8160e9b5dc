//! The accuracy table: one row per (row group, method, dataset, shot), the measured accuracy ± 95% CI
//! over the frozen test episodes (averaged over training seeds, with the spread across seeds beside
//! it), the method's own authors' number with Δ, the range of listed reproductions and related
//! methods' numbers (all of the row's own backbone only), n and the CI formula. Cells not run are kept as rows and marked; published numbers that do not exist are "n/a".
//! Written as Markdown and CSV.

use serde::Serialize;

use super::run_results::{CellResult, CellStatus};
use crate::manifest::experiment::IMAGENET_TEST_CLASSES;
use crate::manifest::references::References;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableRow {
    pub group: String,
    pub method: String,
    pub dataset: String,
    pub shot: usize,
    /// Mean accuracy in % over the seeds that finished (None: not run).
    pub accuracy: Option<f64>,
    /// Mean of the seeds' 95% CI half-widths, in points.
    pub ci95: Option<f64>,
    pub n_episodes: Option<usize>,
    pub seeds_done: usize,
    pub seeds_planned: usize,
    /// Standard deviation of the seeds' means (ddof = 1), in points, with ≥ 2 seeds.
    pub seed_spread: Option<f64>,
    pub published: Option<f64>,
    pub published_source: Option<String>,
    pub delta: Option<f64>,
    /// (min, max, count) of listed reproductions.
    pub reproductions: Option<(f64, f64, usize)>,
    /// Related methods' published numbers beside this row: (name, accuracy in %).
    pub related: Vec<(String, f64)>,
    /// The row's backbone, as papers print it (references are matched on it).
    pub backbone: String,
    pub imagenet_overlap: bool,
    /// `done`, `failed`, `not run`, or `k/n seeds`.
    pub status: String,
    pub cell_hashes: Vec<String>,
    pub ci_formula: String,
}

/// Rows in plan order.
pub fn table_rows(results: &[CellResult], refs: &References, ci_formula: &str) -> Vec<TableRow> {
    let mut rows: Vec<TableRow> = Vec::new();
    for r in results {
        let p = &r.planned;
        let key = (&p.group, &p.method, &p.dataset, p.shot);
        if rows
            .iter()
            .any(|row| (&row.group, &row.method, &row.dataset, row.shot) == key)
        {
            continue;
        }
        let same: Vec<&CellResult> = results
            .iter()
            .filter(|o| {
                (
                    &o.planned.group,
                    &o.planned.method,
                    &o.planned.dataset,
                    o.planned.shot,
                ) == key
            })
            .collect();
        let done: Vec<&CellResult> = same.iter().copied().filter(|o| o.eval.is_some()).collect();
        let means: Vec<f64> = done
            .iter()
            .map(|o| 100.0 * o.eval.as_ref().unwrap().mean)
            .collect();
        let accuracy = (!means.is_empty()).then(|| means.iter().sum::<f64>() / means.len() as f64);
        let ci95 = (!done.is_empty()).then(|| {
            done.iter()
                .map(|o| 100.0 * o.eval.as_ref().unwrap().ci95)
                .sum::<f64>()
                / done.len() as f64
        });
        let seed_spread = (means.len() >= 2).then(|| {
            let m = accuracy.unwrap();
            (means.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (means.len() - 1) as f64).sqrt()
        });
        let backbone = p.cell.backbone.kind;
        let authors = refs.authors(&p.method, &p.dataset, p.shot, backbone);
        let published = authors.map(|(_, v)| v.accuracy);
        let failed = same
            .iter()
            .any(|o| matches!(o.status, CellStatus::Failed { .. }));
        let status = if done.len() == same.len() {
            "done".to_string()
        } else if failed {
            "failed".to_string()
        } else if done.is_empty() {
            "not run".to_string()
        } else {
            format!("{}/{} seeds", done.len(), same.len())
        };
        rows.push(TableRow {
            group: p.group.clone(),
            method: p.method.clone(),
            dataset: p.dataset.clone(),
            shot: p.shot,
            accuracy,
            ci95,
            n_episodes: done.first().map(|o| o.eval.as_ref().unwrap().n),
            seeds_done: done.len(),
            seeds_planned: same.len(),
            seed_spread,
            published,
            published_source: authors
                .map(|(s, _)| format!("{} ({})", s.source, s.backbone))
                .or_else(|| {
                    refs.missing(&p.method, backbone)
                        .map(|m| format!("n/a: {m}"))
                }),
            delta: accuracy.zip(published).map(|(a, b)| a - b),
            reproductions: refs.reproduction_range(&p.method, &p.dataset, p.shot, backbone),
            related: refs.related(&p.method, &p.dataset, p.shot, backbone),
            backbone: backbone.display_name().to_string(),
            imagenet_overlap: p.imagenet_pretrained
                && IMAGENET_TEST_CLASSES.contains(&p.dataset.as_str()),
            status,
            cell_hashes: same.iter().map(|o| o.hash.clone()).collect(),
            ci_formula: ci_formula.to_string(),
        });
    }
    rows
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "n/a".into())
}

/// The Markdown table, one section per row group, footnotes for the flags.
pub fn markdown(
    rows: &[TableRow],
    group_titles: &[(String, String)],
    profile: &str,
    profile_note: Option<&str>,
) -> String {
    let mut out = format!("Profile: `{profile}`. Accuracy in %, mean ± 95% CI over the frozen test episodes ({}); Δ = ours − the method's own authors' number; published numbers are shown only beside rows of their own backbone.\n\n", rows.first().map(|r| r.ci_formula.as_str()).unwrap_or(""));
    match (profile, profile_note) {
        ("full", _) => {}
        (_, Some(note)) => out += &format!("**Not the paper's protocol**: {note}\n\n"),
        (_, None) => out += &format!("**Not the paper's protocol**: the `{profile}` profile shortens or shrinks the runs (see `manifests/experiments/`), so Δ against published numbers says nothing about the methods.\n\n"),
    }
    // a group this report has no row of (a profile that runs only some groups) gets no empty section
    for (group, title) in group_titles
        .iter()
        .filter(|(group, _)| rows.iter().any(|r| &r.group == group))
    {
        out += &format!("### {title}\n\n| method | backbone | dataset | shot | ours | n | seeds | authors | Δ | reproductions | related methods | status |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for r in rows.iter().filter(|r| &r.group == group) {
            let ours = match (r.accuracy, r.ci95) {
                (Some(a), Some(c)) => format!(
                    "{a:.2} ± {c:.2}{}",
                    if r.imagenet_overlap { " ‡" } else { "" }
                ),
                _ => "—".into(),
            };
            let seeds = match r.seed_spread {
                Some(s) => format!("{}/{} (sd {s:.2})", r.seeds_done, r.seeds_planned),
                None => format!("{}/{}", r.seeds_done, r.seeds_planned),
            };
            let repro = r
                .reproductions
                .map(|(lo, hi, n)| {
                    if n == 1 {
                        format!("{lo:.2} (1)")
                    } else {
                        format!("{lo:.2}–{hi:.2} ({n})")
                    }
                })
                .unwrap_or_else(|| "—".into());
            let related = if r.related.is_empty() {
                "—".to_string()
            } else {
                r.related
                    .iter()
                    .map(|(name, a)| format!("{name} {a:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.method,
                r.backbone,
                r.dataset,
                r.shot,
                ours,
                r.n_episodes
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "—".into()),
                seeds,
                opt(r.published, 2),
                r.delta
                    .map(|d| format!("{d:+.2}"))
                    .unwrap_or_else(|| "—".into()),
                repro,
                related,
                r.status
            );
        }
        out += "\n";
    }
    if rows.iter().any(|r| r.imagenet_overlap) {
        out += "‡ ImageNet-pretrained backbone: ImageNet-1k contains this dataset's test classes, so these rows are not few-shot on unseen classes (METHOD.md §0).\n\n";
    }
    let mut sources: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            r.published_source
                .clone()
                .map(|s| format!("- {}: {s}", r.method))
        })
        .collect();
    sources.sort();
    sources.dedup();
    out += "Authors' numbers:\n";
    for s in sources {
        out += &s;
        out += "\n";
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The CSV (one line per row, every number unrounded).
pub fn csv(rows: &[TableRow], profile: &str) -> String {
    let mut out = String::from("profile,group,method,backbone,dataset,shot,accuracy,ci95,n_episodes,seeds_done,seeds_planned,seed_spread,published,delta,reproductions_min,reproductions_max,reproductions_count,related,imagenet_overlap,status,ci_formula,cell_hashes,published_source\n");
    let num = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    for r in rows {
        let (lo, hi, n) = match r.reproductions {
            Some((lo, hi, n)) => (lo.to_string(), hi.to_string(), n.to_string()),
            None => Default::default(),
        };
        let fields = [
            profile.to_string(),
            r.group.clone(),
            r.method.clone(),
            r.backbone.clone(),
            r.dataset.clone(),
            r.shot.to_string(),
            num(r.accuracy),
            num(r.ci95),
            r.n_episodes.map(|n| n.to_string()).unwrap_or_default(),
            r.seeds_done.to_string(),
            r.seeds_planned.to_string(),
            num(r.seed_spread),
            num(r.published),
            num(r.delta),
            lo,
            hi,
            n,
            r.related
                .iter()
                .map(|(name, a)| format!("{name} {a}"))
                .collect::<Vec<_>>()
                .join("; "),
            r.imagenet_overlap.to_string(),
            r.status.clone(),
            r.ci_formula.clone(),
            r.cell_hashes.join(" "),
            r.published_source.clone().unwrap_or_default(),
        ];
        out += &fields
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",");
        out += "\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A profile that runs one row group (cpu-conv4: only `controlled`) gets no empty section for
    /// the other.
    #[test]
    fn a_group_without_rows_gets_no_section() {
        let row = TableRow {
            group: "controlled".into(),
            method: "protonet".into(),
            dataset: "mini-imagenet".into(),
            shot: 1,
            accuracy: Some(43.76),
            ci95: Some(0.43),
            n_episodes: Some(2000),
            seeds_done: 1,
            seeds_planned: 1,
            seed_spread: None,
            published: None,
            published_source: None,
            delta: None,
            reproductions: None,
            related: vec![],
            backbone: "Conv-4".into(),
            imagenet_overlap: false,
            status: "done".into(),
            cell_hashes: vec!["21b7ed86".into()],
            ci_formula: "1.96 * std(ddof=1) / sqrt(n)".into(),
        };
        let titles = [
            ("paper".to_string(), "Paper protocol".to_string()),
            ("controlled".to_string(), "Controlled protocol".to_string()),
        ];
        let md = markdown(&[row], &titles, "cpu-conv4", None);
        assert!(!md.contains("### Paper protocol"), "{md}");
        assert!(md.contains("### Controlled protocol"), "{md}");
        assert!(
            md.contains("| protonet | Conv-4 | mini-imagenet | 1 | 43.76 ± 0.43 |"),
            "{md}"
        );
    }
}
