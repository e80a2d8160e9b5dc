//! Checks a written report against itself: every row of `<table>.csv` that has a result must be the
//! mean and 95% CI recomputed from `<table>-episodes.csv`, the per-episode accuracies of the cells
//! the row names (averaged over its seeds, as the table does). A committed table whose numbers do not
//! follow from its committed per-episode file is refused with the row and the two values.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::eval::stats::mean_ci95;

/// Splits one CSV line (fields quoted with `"` when they hold commas or quotes).
fn fields(line: &str) -> Vec<String> {
    let (mut out, mut field, mut quoted, mut chars) =
        (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    out.push(field);
    out
}

/// Rows of a CSV file as maps from header name to field.
fn read_csv(path: &Path) -> Result<Vec<BTreeMap<String, String>>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut lines = text.lines();
    let header = fields(lines.next().unwrap_or_default());
    Ok(lines
        .filter(|l| !l.is_empty())
        .map(|l| header.iter().cloned().zip(fields(l)).collect())
        .collect())
}

/// Checks `<dir>/<table>.csv` against `<dir>/<table>-episodes.csv`; returns how many rows with a
/// result were checked.
pub fn check_table_against_episodes(dir: &Path, table: &str) -> Result<usize> {
    let table_path = dir.join(format!("{table}.csv"));
    let episodes_path = dir.join(format!("{table}-episodes.csv"));
    let mut per_cell: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for row in read_csv(&episodes_path)? {
        let accuracy: f64 = row["accuracy"].parse().map_err(|_| {
            Error::invalid(format!(
                "{}: unreadable accuracy {:?}",
                episodes_path.display(),
                row["accuracy"]
            ))
        })?;
        per_cell
            .entry(row["cell_hash"].clone())
            .or_default()
            .push(accuracy);
    }
    let mut checked = 0;
    for row in read_csv(&table_path)? {
        let Ok(accuracy) = row["accuracy"].parse::<f64>() else {
            continue; // not run: nothing to check
        };
        let name = format!(
            "{} {} {} {}-shot",
            row["group"], row["method"], row["dataset"], row["shot"]
        );
        let mut means = Vec::new();
        let mut cis = Vec::new();
        for hash in row["cell_hashes"].split(' ') {
            if let Some(values) = per_cell.get(hash) {
                let s = mean_ci95(values);
                means.push(100.0 * s.mean);
                cis.push(100.0 * s.ci95);
                if row["n_episodes"] != values.len().to_string() {
                    return Err(Error::invalid(format!(
                        "{}: {name}: n = {} but {} holds {} episodes of cell {hash}",
                        table_path.display(),
                        row["n_episodes"],
                        episodes_path.display(),
                        values.len()
                    )));
                }
            }
        }
        let recomputed = means.iter().sum::<f64>() / means.len().max(1) as f64;
        let ci: f64 = cis.iter().sum::<f64>() / cis.len().max(1) as f64;
        let table_ci: f64 = row["ci95"].parse().unwrap_or(f64::NAN);
        if means.is_empty() || (recomputed - accuracy).abs() > 1e-9 || (ci - table_ci).abs() > 1e-9
        {
            return Err(Error::invalid(format!(
                "{}: {name}: the table says {accuracy} ± {table_ci}, {} gives {recomputed} ± {ci}; rewrite the report with `cargo xtask reproduce` (cached cells are not retrained)",
                table_path.display(),
                episodes_path.display()
            )));
        }
        checked += 1;
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every committed report of Table 1 (the smoke profile's is generated, git-ignored) follows
    /// from its committed per-episode file.
    #[test]
    fn committed_reports_follow_from_their_episode_files() {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let e = crate::manifest::experiment::Experiment::read(&root.join("manifests"), "table1")
            .unwrap();
        for (name, profile) in e.profile.iter().filter(|(n, _)| n.as_str() != "smoke") {
            let dir = root.join(&profile.reports);
            if dir.join("table1.csv").is_file() {
                let rows = check_table_against_episodes(&dir, "table1")
                    .unwrap_or_else(|e| panic!("profile {name}: {e}"));
                assert!(
                    rows > 0,
                    "profile {name}: a committed table without results"
                );
            }
        }
    }

    #[test]
    fn quoted_fields_keep_their_commas_and_quotes() {
        assert_eq!(
            fields(r#"a,"b, c","say ""n/a""",,d"#),
            vec!["a", "b, c", r#"say "n/a""#, "", "d"]
        );
    }
}
