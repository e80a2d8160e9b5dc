//! `cargo xtask reproduce --table 1 [--profile full|quick|smoke] [--dataset ..] [--method ..] [--shot ..]
//! [--device cpu|cuda[:N]] [--dry-run]`: plans the table's cells from `manifests/experiments/table1.toml`,
//! fetches and prepares the datasets they need (the same verified path as `fetch-data`), trains and
//! evaluates every cell that has no result yet with the `fewshot` binary (an interrupted cell resumes
//! from its checkpoint; a finished one is reused unless its store fingerprint changed), and writes the
//! report into the profile's folder (`reports/` for `full`, `reports/smoke/` for `smoke`). A failing cell
//! is reported with its log and the others go on; the exit code says whether any failed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use fewshot::data::prepare::{store_dir, store_file_name};
use fewshot::data::store::Store;
use fewshot::manifest::cell::CellConfig;
use fewshot::manifest::experiment::{Experiment, PlannedCell};
use fewshot::manifest::load_dataset;
use fewshot::report::provenance::BuildInfo;
use fewshot::report::report_files::write_report;
use fewshot::report::run_results::{read_eval, CellResult, PhaseTimes};

use crate::step_costs::{estimate_seconds, human, step_history};
use crate::{cell_launcher, fetch_data, repo};

#[derive(Args)]
pub struct ReproduceArgs {
    /// The table to reproduce (`manifests/experiments/table<N>.toml`).
    #[arg(long)]
    table: u32,
    /// full (the paper's protocol, GPU), quick (shortened training) or smoke (CPU, minutes).
    #[arg(long, default_value = "full")]
    profile: String,
    /// Only these datasets (repeatable).
    #[arg(long)]
    dataset: Vec<String>,
    /// Only these methods (repeatable).
    #[arg(long)]
    method: Vec<String>,
    /// Only these shots (repeatable).
    #[arg(long)]
    shot: Vec<usize>,
    /// cpu, cuda or cuda:N (default: the profile's).
    #[arg(long)]
    device: Option<String>,
    /// Print the plan (cells, cached or not, estimated cost) and stop.
    #[arg(long)]
    dry_run: bool,
    /// Use the dev build of `fewshot` (what `cargo test` builds) instead of a release build.
    #[arg(long)]
    dev_build: bool,
    /// Where datasets live (default: ./datasets, or FEWSHOT_DATA).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where run folders go (default: ./runs).
    #[arg(long)]
    runs: Option<PathBuf>,
    /// Run this `fewshot` binary instead of building one: for long runs, a release build copied aside
    /// at a recorded commit, so that resuming after the checkout moved on runs the same code.
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Run the plan's shared pre-training nodes only, then stop.
    #[arg(long)]
    pretrain_only: bool,
}

impl ReproduceArgs {
    /// Table 1's smoke profile with the dev build into the run folders `runs` (what `cargo xtask ci`
    /// runs end to end).
    pub fn smoke(runs: PathBuf) -> Self {
        ReproduceArgs {
            table: 1,
            profile: "smoke".into(),
            dataset: Vec::new(),
            method: Vec::new(),
            shot: Vec::new(),
            device: None,
            dry_run: false,
            dev_build: true,
            data_dir: None,
            runs: Some(runs),
            binary: None,
            pretrain_only: false,
        }
    }
}

enum CacheState {
    Done,
    Resumable,
    New,
    /// A result whose store fingerprint no longer matches the prepared store.
    Stale(String),
}

pub fn run(args: ReproduceArgs) -> Result<()> {
    let root = repo::root();
    let manifests = repo::manifests();
    let name = format!("table{}", args.table);
    let experiment = Experiment::read(&manifests, &name)?;
    let profile = experiment.profile(&args.profile)?.clone();
    let device = args
        .device
        .clone()
        .unwrap_or_else(|| profile.device.clone());
    let runs = args.runs.clone().unwrap_or_else(|| root.join("runs"));
    let data_dir = repo::data_dir(args.data_dir.clone());
    let plan: Vec<PlannedCell> = experiment
        .plan(&manifests, &args.profile)?
        .into_iter()
        .filter(|c| args.dataset.is_empty() || args.dataset.contains(&c.dataset))
        .filter(|c| args.method.is_empty() || args.method.contains(&c.method))
        .filter(|c| args.shot.is_empty() || args.shot.contains(&c.shot))
        .collect();
    if plan.is_empty() {
        bail!(
            "the filters leave no cell of {name} under profile {}",
            args.profile
        );
    }
    println!(
        "{name} ({}), profile {}: {} — {} cells on {device}",
        experiment.title,
        args.profile,
        profile.description,
        plan.len()
    );

    let nodes = pretrain_nodes(&plan);

    if args.dry_run {
        let history = step_history(&runs);
        if !nodes.is_empty() {
            println!("\n| pre-training node | cell | shared by | state | estimate |\n|---|---|---|---|---|");
        }
        let mut total = Some(0.0);
        for (node, users) in &nodes {
            let dir = runs.join(node.hash());
            let (state, estimate) = if fewshot::run_folders::pretrain_done(&dir) {
                ("cached", Some(0.0))
            } else if dir.join("checkpoint-last.safetensors").is_file() {
                ("resumes", estimate_seconds(&history, node, &device))
            } else {
                ("new", estimate_seconds(&history, node, &device))
            };
            total = total.zip(estimate).map(|(t, e)| t + e);
            let users: Vec<String> = users.iter().map(|k| format!("#{}", k + 1)).collect();
            println!(
                "| {}/{} {} epochs | {} | {} | {state} | {} |",
                node.dataset,
                format!("{:?}", node.backbone.kind).to_lowercase(),
                node.train.pretrain.as_ref().map_or(0, |p| p.epochs),
                node.hash(),
                users.join(" "),
                estimate.map(human).unwrap_or_else(|| "unknown".into())
            );
        }
        println!("\n| # | group | method | dataset | shot | seed | cell | state | estimate |\n|---|---|---|---|---|---|---|---|---|");
        for (k, c) in plan.iter().enumerate() {
            let state = match cache_state(&runs, &data_dir, &manifests, c) {
                CacheState::Done => "cached".to_string(),
                CacheState::Resumable => "resumes".to_string(),
                CacheState::New => "new".to_string(),
                CacheState::Stale(why) => format!("stale ({why})"),
            };
            let estimate = if state == "cached" {
                Some(0.0)
            } else {
                estimate_seconds(&history, &c.cell, &device)
            };
            total = total.zip(estimate).map(|(t, e)| t + e);
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {state} | {} |",
                k + 1,
                c.group,
                c.method,
                c.dataset,
                c.shot,
                c.seed,
                c.cell.hash(),
                estimate.map(human).unwrap_or_else(|| "unknown".into())
            );
        }
        match total {
            Some(t) => println!("\nestimated total: {} (from recorded step times of finished cells with the same backbone, head, image size, shot and device)", human(t)),
            None => println!("\nestimated total: unknown (some cells have no finished run with the same backbone, head, image size, shot and device to time them by)"),
        }
        return Ok(());
    }

    if device.starts_with("cuda") {
        cell_launcher::cuda_ready(
            &cell_launcher::probe_cuda(),
            args.binary.is_some(),
            &format!("profile {}", args.profile),
        )?;
    }
    // datasets: the same verified path as fetch-data; a dataset that cannot be set up fails its cells only
    let mut datasets: Vec<String> = plan.iter().map(|c| c.dataset.clone()).collect();
    datasets.sort();
    datasets.dedup();
    let mut unavailable: Vec<(String, String)> = Vec::new();
    for d in &datasets {
        if let Err(e) = fetch_data::run(fetch_data::FetchDataArgs::datasets(
            vec![d.clone()],
            args.data_dir.clone(),
        )) {
            println!("dataset {d} is not available: {e:#}");
            unavailable.push((d.clone(), format!("{e:#}")));
        }
    }
    let cuda = device.starts_with("cuda");
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => cell_launcher::build_fewshot(!args.dev_build, cuda)?,
    };
    cell_launcher::check_libraries(&binary)?;

    let mut failed: Vec<(usize, PathBuf)> = Vec::new();
    let started_all = Instant::now();
    // the shared pre-training nodes first; a node that fails fails the cells that start from it
    for (node, users) in &nodes {
        let hash = node.hash();
        let label = format!(
            "pre-training {} ({hash}) for {} cells",
            node.dataset,
            users.len()
        );
        let dir = runs.join(&hash);
        let log = dir.join("reproduce.log");
        if unavailable.iter().any(|(d, _)| d == &node.dataset) {
            continue; // its cells report the dataset
        }
        if fewshot::run_folders::pretrain_done(&dir) {
            println!("{label}: cached");
            continue;
        }
        println!(
            "{label}: {}",
            if dir.join("checkpoint-last.safetensors").is_file() {
                "resuming"
            } else {
                "training"
            }
        );
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("cell.toml");
        fewshot::atomic_write::write_atomically(&config, toml_text(node)?.as_bytes())?;
        let command = cell_launcher::CellCommand::new(&binary, &config, &device, &data_dir, &runs);
        let t = Instant::now();
        let result = command.run("train", &log);
        add_train_seconds(&dir, &device, t.elapsed().as_secs_f64())?;
        match result {
            Ok(()) => println!("{label}: done in {}", human(t.elapsed().as_secs_f64())),
            Err(e) => {
                println!("{label}: FAILED: {e:#} (log {})", log.display());
                failed.extend(users.iter().map(|&k| (k, log.clone())));
            }
        }
    }
    if args.pretrain_only {
        if !failed.is_empty() {
            bail!("a pre-training node failed (logs above); re-running resumes it");
        }
        println!("pre-training nodes done; --pretrain-only stops here");
        return Ok(());
    }
    for (k, c) in plan.iter().enumerate() {
        if failed.iter().any(|(i, _)| *i == k) {
            continue;
        }
        let hash = c.cell.hash();
        let dir = runs.join(&hash);
        let label = format!(
            "[{}/{}] {}/{}/{}/{}-shot/seed {} ({hash})",
            k + 1,
            plan.len(),
            c.group,
            c.method,
            c.dataset,
            c.shot,
            c.seed
        );
        let log = dir.join("reproduce.log");
        if let Some((_, why)) = unavailable.iter().find(|(d, _)| d == &c.dataset) {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(
                &log,
                format!("dataset {} is not available: {why}\n", c.dataset),
            )?;
            println!(
                "{label}: FAILED (dataset unavailable; log {})",
                log.display()
            );
            failed.push((k, log));
            continue;
        }
        match cache_state(&runs, &data_dir, &manifests, c) {
            CacheState::Done => {
                println!("{label}: cached");
                continue;
            }
            CacheState::Stale(why) => {
                let aside = runs.join(format!("{hash}.stale-{}", std::process::id()));
                println!(
                    "{label}: stale ({why}); moved to {} and recomputed",
                    aside.display()
                );
                std::fs::rename(&dir, &aside)?;
            }
            CacheState::Resumable => println!("{label}: resuming"),
            CacheState::New => println!("{label}: training"),
        }
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("cell.toml");
        fewshot::atomic_write::write_atomically(&config, toml_text(&c.cell)?.as_bytes())?;
        let mut phases: PhaseTimes = std::fs::read_to_string(dir.join("phases.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        phases.device = device.clone();
        let command = cell_launcher::CellCommand::new(&binary, &config, &device, &data_dir, &runs);
        let run_phase = |action: &str| -> Result<f64> {
            let t = Instant::now();
            command.run(action, &log)?;
            Ok(t.elapsed().as_secs_f64())
        };
        let outcome = run_phase("train").and_then(|train| {
            phases.train_seconds = Some(phases.train_seconds.unwrap_or(0.0) + train);
            println!("{label}: trained in {}, evaluating", human(train));
            run_phase("eval").map(|eval| phases.eval_seconds = Some(eval))
        });
        fewshot::atomic_write::write_atomically(
            &dir.join("phases.json"),
            serde_json::to_string_pretty(&phases)?.as_bytes(),
        )?;
        match outcome {
            Ok(()) => {
                let e = read_eval(&dir)?.context("eval.json missing after eval")?;
                println!(
                    "{label}: {:.2} ± {:.2} % over {} episodes",
                    100.0 * e.mean,
                    100.0 * e.ci95,
                    e.n
                );
            }
            Err(e) => {
                println!("{label}: FAILED: {e:#} (log {})", log.display());
                failed.push((k, log));
            }
        }
    }

    let results: Vec<CellResult> = plan
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let log = failed
                .iter()
                .find(|(i, _)| *i == k)
                .map(|(_, l)| l.as_path());
            CellResult::load(&runs, c, log)
        })
        .collect::<fewshot::Result<_>>()?;
    let out = root.join(&profile.reports);
    let build = build_info(&root, &binary, &device);
    let outcome = write_report(
        &out,
        &manifests,
        &experiment,
        &args.profile,
        &results,
        build,
    )?;
    println!(
        "\nreport ({} files, {} for all cells):",
        outcome.files.len(),
        human(started_all.elapsed().as_secs_f64())
    );
    for f in &outcome.files {
        println!("  {}", f.strip_prefix(&root).unwrap_or(f).display());
    }
    if args.profile == "full" && failed.is_empty() {
        let table = out.join(format!("{name}.md"));
        let readme_path = root.join("README.md");
        let readme = std::fs::read_to_string(&readme_path)?;
        let block = fewshot::report::readme_block::expected_block(
            &name,
            std::fs::read_to_string(&table).ok().as_deref(),
        );
        let updated = fewshot::report::readme_block::with_block(&readme, &name, &block)?;
        fewshot::atomic_write::write_atomically(&readme_path, updated.as_bytes())?;
        println!(
            "  README.md results block updated from {} (commit both)",
            table.display()
        );
    }
    if let Some(why) = outcome.figures_skipped {
        println!("  figures not drawn: {why}");
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} cells failed (logs above); re-running picks up where it stopped",
            failed.len(),
            plan.len()
        );
    }
    Ok(())
}

/// The distinct pre-training nodes of `plan`, each with the indices of the cells that start from it.
fn pretrain_nodes(plan: &[PlannedCell]) -> Vec<(CellConfig, Vec<usize>)> {
    let mut nodes: Vec<(CellConfig, Vec<usize>)> = Vec::new();
    for (k, c) in plan.iter().enumerate() {
        let Some(node) = c.cell.pretrain_node() else {
            continue;
        };
        match nodes.iter_mut().find(|(n, _)| *n == node) {
            Some((_, users)) => users.push(k),
            None => nodes.push((node, vec![k])),
        }
    }
    nodes
}

/// Adds `seconds` of training to the run folder's `phases.json` (a resumed run adds up).
fn add_train_seconds(dir: &Path, device: &str, seconds: f64) -> Result<()> {
    let path = dir.join("phases.json");
    let mut phases: PhaseTimes = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    phases.device = device.to_string();
    phases.train_seconds = Some(phases.train_seconds.unwrap_or(0.0) + seconds);
    fewshot::atomic_write::write_atomically(
        &path,
        serde_json::to_string_pretty(&phases)?.as_bytes(),
    )?;
    Ok(())
}

fn toml_text(cell: &CellConfig) -> Result<String> {
    Ok(format!(
        "# resolved by `cargo xtask reproduce` from manifests/experiments/; cell hash {}\n{}",
        cell.hash(),
        toml::to_string_pretty(cell)?
    ))
}

fn cache_state(runs: &Path, data_dir: &Path, manifests: &Path, c: &PlannedCell) -> CacheState {
    let dir = runs.join(c.cell.hash());
    match read_eval(&dir) {
        Ok(Some(e)) => match current_test_fingerprint(data_dir, manifests, c) {
            Some(fp) if fp != e.store_fingerprint => CacheState::Stale(format!(
                "test store fingerprint {} ≠ {}",
                &fp[..12],
                &e.store_fingerprint[..12.min(e.store_fingerprint.len())]
            )),
            _ => CacheState::Done,
        },
        _ if dir.join("checkpoint-last.safetensors").is_file() => CacheState::Resumable,
        _ => CacheState::New,
    }
}

/// The fingerprint of the cell's prepared test store, when it is prepared.
fn current_test_fingerprint(data_dir: &Path, manifests: &Path, c: &PlannedCell) -> Option<String> {
    let m = load_dataset(manifests, &c.dataset).ok()?;
    let (variant, _) = m.split_lists(c.cell.split_variant.as_deref()).ok()?;
    let path =
        store_dir(data_dir, &m, variant).join(store_file_name(&m, "test", c.cell.store_size));
    Store::open(&path)
        .ok()
        .map(|s| s.header.fingerprint.clone())
}

fn build_info(root: &Path, binary: &Path, device: &str) -> BuildInfo {
    let run = |cmd: &mut Command| {
        cmd.output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let version = run(Command::new(binary).arg("--version")).unwrap_or_else(|| "unknown".into());
    let driver = if device.starts_with("cuda") {
        run(Command::new("nvidia-smi")
            .args(["--query-gpu=driver_version", "--format=csv,noheader"]))
    } else {
        None
    };
    BuildInfo {
        git_commit: fewshot::git_state::git_commit(root),
        git_dirty: fewshot::git_state::git_dirty(root),
        binary_version: version,
        binary_features: if device.starts_with("cuda") {
            vec!["train".into(), "cuda".into()]
        } else {
            vec!["train".into()]
        },
        device: device.to_string(),
        driver,
    }
}
