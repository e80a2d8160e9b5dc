//! `cargo xtask regress [--bless --reason "..."]`: the CI accuracy gate (issue #5). For every gate in
//! `manifests/baselines/ci.toml` it runs the `fewshot` binary on real data — evaluation gates evaluate
//! a committed checkpoint on frozen episodes, training gates train their cell from scratch and then
//! evaluate it — and judges the per-episode accuracies with the rule in `fewshot::eval::gate`. Runs go
//! to a fresh `reports/smoke/regress/runs/` every time (a cached run would hide a regression); the
//! table and `verdicts.json` to `reports/smoke/regress/`. `--bless` writes what was measured back into
//! the baseline, with the reason, commit, machine and date, for review in the diff. `--jobs N` runs N
//! gates at once, each on an equal share of the cores (CI: the four training gates, two at a time).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use fewshot::eval::episode_file::{
    read_episode_accuracies, write_episode_accuracies, EpisodeAccuracy,
};
use fewshot::eval::gate::{judge, GateVerdict};
use fewshot::manifest::baseline::{CiBaselines, GateBaseline, GateKind};
use fewshot::manifest::cell::CellConfig;
use sha2::{Digest, Sha256};

use crate::cell_launcher::CellCommand;
use crate::{fetch_data, repo};

#[derive(Args)]
pub struct RegressArgs {
    /// Write the measured results into manifests/baselines/ci.toml (needs --reason).
    #[arg(long, requires = "reason")]
    bless: bool,
    /// Why the baseline changes; recorded beside the numbers.
    #[arg(long)]
    reason: Option<String>,
    /// Only the gates whose name contains this (repeatable).
    #[arg(long)]
    gate: Vec<String>,
    /// Build and run the release binary (default: the dev build, which `cargo test` has built).
    #[arg(long)]
    release: bool,
    /// Where datasets live (default: ./datasets, or FEWSHOT_DATA).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Run the gates with a deliberate fault switched on (see `fewshot train --help`), to watch them
    /// fail; cannot be blessed.
    #[arg(long, conflicts_with = "bless", value_parser = fewshot::sabotage::Sabotage::parse)]
    sabotage: Option<fewshot::sabotage::Sabotage>,
    /// Gates at once, each on an equal share of the cores (`RAYON_NUM_THREADS`, as `reproduce
    /// --jobs`; a count you set is kept). Every gate is its own process; a thread count can reorder
    /// floating-point sums, but the four training gates gave byte-identical per-episode files on one
    /// thread and on two (the 2-core EPYC, 2026-12-08).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
}

impl Default for RegressArgs {
    /// Every gate, one at a time, nothing blessed (what `cargo xtask regress` does).
    fn default() -> Self {
        Self {
            bless: false,
            reason: None,
            gate: Vec::new(),
            release: false,
            data_dir: None,
            sabotage: None,
            jobs: 1,
        }
    }
}

impl RegressArgs {
    /// Only the gates whose name contains `filter` (what `--gate` sets).
    pub fn only(filter: &str) -> Self {
        Self {
            gate: vec![filter.into()],
            ..Self::default()
        }
    }
}

pub fn baselines_path() -> PathBuf {
    repo::manifests().join("baselines/ci.toml")
}

pub fn run(args: RegressArgs) -> Result<()> {
    let root = repo::root();
    let manifests = repo::manifests();
    let path = baselines_path();
    let mut baselines = CiBaselines::read(&path)?;
    let cells = plan(&baselines, &args, &path, &manifests)?;
    println!("== regress: rule: {}", baselines.rule);
    if let Some(s) = args.sabotage {
        println!(
            "== regress: SABOTAGED run ({}): these gates should fail",
            s.name()
        );
    }
    let mut datasets: Vec<String> = cells.iter().map(|(_, _, c)| c.dataset.clone()).collect();
    datasets.sort();
    datasets.dedup();
    fetch_data::run(fetch_data::FetchDataArgs::datasets(
        datasets,
        args.data_dir.clone(),
    ))?;
    let data_dir = repo::data_dir(args.data_dir.clone());

    let binary = crate::cell_launcher::build_fewshot(args.release, false)?;
    let out = root.join("reports/smoke/regress");
    let runs = out.join("runs");
    if runs.exists() {
        std::fs::remove_dir_all(&runs).with_context(|| runs.display().to_string())?;
    }
    std::fs::create_dir_all(out.join("logs"))?;

    let slots = crate::local_executor::slots(
        args.jobs,
        "cpu",
        &crate::local_executor::Machine::here("cpu"),
    )?;
    let outcomes = crate::local_executor::in_slots(cells.iter().collect(), &slots, |slot, c| {
        let (i, file, cell) = c;
        let g = &baselines.gate[*i];
        let log = out
            .join("logs")
            .join(format!("{}.log", g.name.replace('/', "_")));
        let gate = Gate {
            g,
            file,
            cell,
            env: &slot.env,
        };
        (
            *i,
            gate.execute(&binary, &data_dir, &runs, &log, &manifests),
        )
    });
    let mut verdicts = Vec::new();
    let mut measured: Vec<(usize, Vec<EpisodeAccuracy>)> = Vec::new();
    for (i, outcome) in outcomes {
        let (verdict, records) = outcome?;
        verdicts.push(verdict);
        if let Some(records) = records {
            measured.push((i, records));
        }
    }
    let report = record(&out, &baselines.rule, &verdicts)?;
    if args.bless {
        let reason = args.reason.clone().expect("clap requires it");
        if measured.len() != cells.len() {
            bail!("not blessing: some gates did not run (see above)");
        }
        return bless(&mut baselines, &measured, &reason, &path, &manifests, &root);
    }
    let failed: Vec<&str> = verdicts
        .iter()
        .filter(|v| !v.pass)
        .map(|v| v.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "the accuracy gate failed for {} (see {}); if the change is intended, run `cargo xtask regress --bless --reason \"...\"` and commit the baseline",
            failed.join(", "),
            report.display()
        );
    }
    println!("== regress: all {} gates passed", verdicts.len());
    Ok(())
}

/// The gates `args` selects (all when it names none), each with its cell config read from
/// `manifests` (and the sabotage applied): (gate index, cell file, cell).
fn plan(
    baselines: &CiBaselines,
    args: &RegressArgs,
    path: &Path,
    manifests: &Path,
) -> Result<Vec<(usize, PathBuf, CellConfig)>> {
    let selected: Vec<usize> = (0..baselines.gate.len())
        .filter(|&i| {
            args.gate.is_empty()
                || args
                    .gate
                    .iter()
                    .any(|g| baselines.gate[i].name.contains(g.as_str()))
        })
        .collect();
    if selected.is_empty() {
        bail!("no gate in {} matches {:?}", path.display(), args.gate);
    }
    let mut cells = Vec::new();
    for i in selected {
        let file = manifests.join(&baselines.gate[i].cell);
        let text = std::fs::read_to_string(&file).with_context(|| file.display().to_string())?;
        let mut cell =
            CellConfig::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        cell.sabotage = args.sabotage;
        cells.push((i, file, cell));
    }
    Ok(cells)
}

/// One planned gate.
struct Gate<'a> {
    g: &'a GateBaseline,
    file: &'a Path,
    cell: &'a CellConfig,
    /// The slot's environment for the child (its thread count).
    env: &'a [(String, String)],
}

impl Gate<'_> {
    /// Runs the gate and judges it against its baseline: the verdict, and the per-episode
    /// accuracies when it ran (a gate that could not run fails with the reason, the others go on).
    fn execute(
        &self,
        binary: &Path,
        data_dir: &Path,
        runs: &Path,
        log: &Path,
        manifests: &Path,
    ) -> Result<(GateVerdict, Option<Vec<EpisodeAccuracy>>)> {
        let g = self.g;
        println!(
            "== regress: {} ({:?}, log {})",
            g.name,
            g.kind,
            log.display()
        );
        let started = std::time::Instant::now();
        let records = match run_gate(self, binary, data_dir, runs, log) {
            Ok(r) => r,
            Err(e) => {
                println!("   {}: failed: {e:#} (log: {})", g.name, log.display());
                let verdict = GateVerdict {
                    name: g.name.clone(),
                    baseline_mean: g.mean,
                    now_mean: f64::NAN,
                    now_ci95: f64::NAN,
                    n: 0,
                    delta_pp: f64::NAN,
                    tolerance_pp: g.tolerance_pp,
                    differing_episodes: None,
                    pass: false,
                    reasons: vec![format!("did not run: {e:#}; see {}", log.display())],
                };
                return Ok((verdict, None));
            }
        };
        let blessed = match (&g.kind, &g.episodes) {
            (GateKind::Evaluation, Some(f)) => Some(read_episode_accuracies(&manifests.join(f))?),
            _ => None,
        };
        let verdict = judge(g, blessed.as_deref(), &records, self.cell.episode.n_way);
        println!(
            "   {}: {:.2}% ± {:.2} over {} episodes in {:.0} s: {}",
            g.name,
            100.0 * verdict.now_mean,
            100.0 * verdict.now_ci95,
            verdict.n,
            started.elapsed().as_secs_f64(),
            if verdict.pass { "pass" } else { "FAIL" }
        );
        Ok((verdict, Some(records)))
    }
}

/// The verdicts as a table (printed) and into `out`: `report.md` (returned) and `verdicts.json`.
fn record(out: &Path, rule: &str, verdicts: &[GateVerdict]) -> Result<PathBuf> {
    let table = verdict_table(verdicts);
    println!("\n{table}");
    let report = out.join("report.md");
    fewshot::atomic_write::write_atomically(
        &report,
        format!("# CI accuracy gate\n\nRule: {rule}\n\n{table}").as_bytes(),
    )?;
    fewshot::atomic_write::write_atomically(
        &out.join("verdicts.json"),
        serde_json::to_string_pretty(verdicts)?.as_bytes(),
    )?;
    println!("report: {}", report.display());
    Ok(report)
}

/// The measured gates become the baseline: mean, CI, who blessed it where and why, and for an
/// evaluation gate its per-episode file; `ci.toml` rewritten.
fn bless(
    baselines: &mut CiBaselines,
    measured: &[(usize, Vec<EpisodeAccuracy>)],
    reason: &str,
    path: &Path,
    manifests: &Path,
    root: &Path,
) -> Result<()> {
    let commit = fewshot::git_state::git_description(root);
    let machine = machine_description();
    let at = fewshot::clock::utc_now();
    // checked before anything is written: an absent loss (a NaN or infinity reads back as `null`)
    // would switch that episode's check off
    for (i, records) in measured {
        let g = &baselines.gate[*i];
        if g.kind != GateKind::Evaluation {
            continue;
        }
        if let Some(r) = records.iter().find(|r| !r.loss.is_some_and(f64::is_finite)) {
            bail!(
                "not blessing {}: episode {} has no finite loss ({:?})",
                g.name,
                r.episode,
                r.loss
            );
        }
    }
    for (i, records) in measured {
        let g = &mut baselines.gate[*i];
        let stats = fewshot::eval::stats::mean_ci95(
            &records.iter().map(|r| r.accuracy).collect::<Vec<_>>(),
        );
        g.mean = stats.mean;
        g.ci95 = stats.ci95;
        g.n = stats.n;
        g.blessed_commit = commit.clone();
        g.blessed_machine = machine.clone();
        g.blessed_at = at.clone();
        g.reason = reason.to_string();
        if let (GateKind::Evaluation, Some(f)) = (g.kind, &g.episodes) {
            write_episode_accuracies(&manifests.join(f), records)?;
        }
    }
    let text = format!(
        "# The CI accuracy gate's blessed results (`cargo xtask regress`); rewritten by\n# `cargo xtask regress --bless --reason \"...\"`. Review the diff like code.\n# Gates run in this order (`--jobs N`: N at a time): the training gates slowest first.\n{}",
        baselines.to_toml()
    );
    fewshot::atomic_write::write_atomically(path, text.as_bytes())?;
    println!("blessed: {} ({reason})", path.display());
    Ok(())
}

/// Runs one gate's cell; returns its per-episode accuracies.
fn run_gate(
    gate: &Gate,
    binary: &Path,
    data_dir: &Path,
    runs: &Path,
    log: &Path,
) -> Result<Vec<EpisodeAccuracy>> {
    let (g, cell) = (gate.g, gate.cell);
    let manifests = repo::manifests();
    let mut command = CellCommand::new(binary, gate.file, "cpu", data_dir, runs);
    command.env = gate.env.to_vec();
    if let Some(s) = cell.sabotage {
        command.extra.extend(["--sabotage".into(), s.name().into()]);
    }
    let run_dir = runs.join(cell.hash());
    match g.kind {
        GateKind::Evaluation => {
            let checkpoint = manifests.join(
                g.checkpoint
                    .as_deref()
                    .context("an evaluation gate needs `checkpoint`")?,
            );
            let bytes =
                std::fs::read(&checkpoint).with_context(|| checkpoint.display().to_string())?;
            let sha = hex::encode(Sha256::digest(&bytes));
            if Some(sha.as_str()) != g.checkpoint_sha256.as_deref() {
                bail!(
                    "{} has SHA-256 {sha}, the baseline pins {:?}: the committed checkpoint changed",
                    checkpoint.display(),
                    g.checkpoint_sha256
                );
            }
            command
                .extra
                .extend(["--checkpoint".into(), checkpoint.clone().into()]);
            command.run("eval", log)?;
            let stem = checkpoint
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            Ok(read_episode_accuracies(
                &run_dir.join(format!("episodes-{stem}.jsonl")),
            )?)
        }
        GateKind::Training => {
            command.run("train", log)?;
            command.run("eval", log)?;
            Ok(read_episode_accuracies(
                &run_dir.join(fewshot::run_files::EPISODES),
            )?)
        }
    }
}

/// The table of gates: baseline, now, Δ, tolerance, pass/fail.
pub fn verdict_table(verdicts: &[GateVerdict]) -> String {
    let mut t = String::from(
        "| gate | baseline | now | Δ (points) | tolerance | differing episodes | result |\n|---|---|---|---|---|---|---|\n",
    );
    for v in verdicts {
        t += &format!(
            "| {} | {:.2}% | {:.2}% ± {:.2} (n={}) | {:+.2} | ±{:.2} | {} | {} |\n",
            v.name,
            100.0 * v.baseline_mean,
            100.0 * v.now_mean,
            100.0 * v.now_ci95,
            v.n,
            v.delta_pp,
            v.tolerance_pp,
            v.differing_episodes
                .map(|d| d.to_string())
                .unwrap_or_else(|| "—".into()),
            if v.pass {
                "pass".to_string()
            } else {
                format!("**FAIL**: {}", v.reasons.join("; "))
            }
        );
    }
    t
}

/// CPU model, logical CPUs and OS, e.g. "AMD EPYC, 2 CPUs, linux x86_64".
pub fn machine_description() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!(
        "{model}, {cpus} CPUs, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan on the committed baselines: every gate by default, a name filter keeps the gates it
    /// names (with their cells read and the sabotage applied), and a filter that names none is an
    /// error naming the file.
    #[test]
    fn plan_selects_gates_by_name_and_reads_their_cells() {
        let (path, manifests) = (baselines_path(), repo::manifests());
        let baselines = CiBaselines::read(&path).unwrap();
        let all = plan(&baselines, &RegressArgs::default(), &path, &manifests).unwrap();
        assert_eq!(all.len(), baselines.gate.len());
        let args = RegressArgs {
            gate: vec!["eval/".into()],
            sabotage: Some(fewshot::sabotage::Sabotage::parse("swap-red-blue").unwrap()),
            ..Default::default()
        };
        let evals = plan(&baselines, &args, &path, &manifests).unwrap();
        assert!(!evals.is_empty() && evals.len() < all.len());
        for (i, file, cell) in &evals {
            assert!(baselines.gate[*i].name.contains("eval/"));
            assert!(file.is_file(), "{}", file.display());
            assert_eq!(cell.sabotage, args.sabotage);
        }
        let args = RegressArgs {
            gate: vec!["no-such-gate".into()],
            ..Default::default()
        };
        let e = plan(&baselines, &args, &path, &manifests).unwrap_err();
        assert!(e.to_string().contains("ci.toml"), "{e}");
    }
}
