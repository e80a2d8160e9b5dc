//! `cargo xtask reproduce --table 1 [--profile full|quick|cpu-conv4|smoke] [--dataset ..] [--method ..] [--shot ..]
//! [--device cpu|cuda[:N]] [--dry-run]`: plans the table's cells from `manifests/experiments/table1.toml`,
//! fetches and prepares the datasets they need (the same verified path as `fetch-data`), trains and
//! evaluates every cell that has no result yet with the `fewshot` binary (an interrupted cell resumes
//! from its checkpoint; a finished one is reused unless its store fingerprint changed), and writes the
//! report into the profile's folder (`reports/` for `full`, `reports/<profile>/` for the others). A failing cell
//! is reported with its log and the others go on; the exit code says whether any failed.
//! `--executor slurm` hands the same cells to Slurm as a job array instead (see `slurm`). Steps: plan
//! (the cells and their cache state), prepare (datasets, the binary), execute (here or on Slurm),
//! record (the report).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use fewshot::manifest::cell::CellConfig;
use fewshot::manifest::experiment::{Experiment, PlannedCell};
use fewshot::report::plan_report::{report_plan, Missing, PlanRuns};
use fewshot::report::provenance::BuildInfo;

use crate::local_executor::{self, Machine};
use crate::step_costs::human;
use crate::{cell_launcher, fetch_data, repo};
use fewshot::run_folders::{cache_state, CacheState};

#[derive(Args)]
pub struct ReproduceArgs {
    /// The table to reproduce (`manifests/experiments/table<N>.toml`).
    #[arg(long)]
    pub(crate) table: u32,
    /// full (the paper's protocol, GPU), quick (shortened training, GPU), cpu-conv4 (Conv-4 on real
    /// miniImageNet at 84×84 on the CPU, hours) or smoke (CPU, minutes).
    #[arg(long, default_value = "full")]
    pub(crate) profile: String,
    /// Only these datasets (repeatable).
    #[arg(long)]
    pub(crate) dataset: Vec<String>,
    /// Only these methods (repeatable).
    #[arg(long)]
    pub(crate) method: Vec<String>,
    /// Only these shots (repeatable).
    #[arg(long)]
    pub(crate) shot: Vec<usize>,
    /// cpu, cuda or cuda:N (default: the profile's).
    #[arg(long)]
    pub(crate) device: Option<String>,
    /// Print the plan (cells, cached or not, estimated cost) and stop.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Use the dev build of `fewshot` (what `cargo test` builds) instead of a release build.
    #[arg(long)]
    pub(crate) dev_build: bool,
    /// Where datasets live (default: ./datasets, or FEWSHOT_DATA).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Where run folders go (default: ./runs).
    #[arg(long)]
    pub(crate) runs: Option<PathBuf>,
    /// Run this `fewshot` binary instead of building one: for long runs, a release build copied aside
    /// at a recorded commit, so that resuming after the checkout moved on runs the same code.
    #[arg(long)]
    pub(crate) binary: Option<PathBuf>,
    /// Run the plan's shared pre-training nodes only, then stop.
    #[arg(long)]
    pub(crate) pretrain_only: bool,
    /// The report folder (default: the profile's, e.g. `reports/smoke/`).
    #[arg(long)]
    pub(crate) reports: Option<PathBuf>,
    /// Where the cells run: here, one after another (`local`), or as a Slurm job array (`slurm`).
    #[arg(long, value_enum, default_value = "local")]
    pub(crate) executor: Executor,
    /// With the local executor: cells at once, each on a GPU of its own (CUDA) or an equal share of
    /// the cores (CPU; a `RAYON_NUM_THREADS` you set is kept for every cell).
    #[arg(long, default_value_t = 1)]
    pub(crate) jobs: usize,
    #[command(flatten)]
    pub slurm: crate::slurm::SlurmArgs,
}

#[derive(Clone, Copy, PartialEq, Debug, clap::ValueEnum)]
pub enum Executor {
    Local,
    Slurm,
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
            reports: None,
            executor: Executor::Local,
            jobs: 1,
            slurm: crate::slurm::SlurmArgs::default(),
        }
    }
}

/// What `reproduce` is asked to do, resolved: the experiment, its filtered cells and their nodes.
pub struct Plan {
    pub name: String,
    pub experiment: Experiment,
    pub profile_name: String,
    pub reports: PathBuf,
    pub device: String,
    pub runs: PathBuf,
    pub data_dir: PathBuf,
    pub manifests: PathBuf,
    pub cells: Vec<PlannedCell>,
    /// Shared pre-training nodes, each with the indices of the cells that start from it.
    pub nodes: Vec<(CellConfig, Vec<usize>)>,
}

impl Plan {
    /// The earlier cell of the plan with the same configuration, so the same run folder (the smoke
    /// profile's LWFM-SPM is one run in the paper's group and in the controlled one): that run is
    /// executed once, never by two processes at once, and both rows read it.
    pub fn same_run_as(&self, k: usize) -> Option<usize> {
        let hash = self.cells[k].cell.hash();
        (0..k).find(|&j| self.cells[j].cell.hash() == hash)
    }

    /// `failed` with every cell that shares a failed cell's run, sorted by plan index.
    pub fn with_shared_failures(&self, mut failed: Vec<(usize, PathBuf)>) -> Vec<(usize, PathBuf)> {
        for k in 0..self.cells.len() {
            let shared = self.same_run_as(k).and_then(|j| {
                let log = failed.iter().find(|(i, _)| *i == j)?;
                Some(log.1.clone())
            });
            if let Some(log) = shared {
                if !failed.iter().any(|(i, _)| *i == k) {
                    failed.push((k, log));
                }
            }
        }
        failed.sort_by_key(|(k, _)| *k);
        failed
    }
}

/// A cell (or node) ready to run: its run folder with `cell.toml` written.
pub struct Staged {
    pub index: usize,
    pub label: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
}

pub fn run(args: ReproduceArgs) -> Result<()> {
    let plan = plan(&args)?;
    println!(
        "{} ({}), profile {}: {} cells on {}",
        plan.name,
        plan.experiment.title,
        plan.profile_name,
        plan.cells.len(),
        plan.device
    );
    if args.dry_run {
        crate::dry_run::print(&plan);
        return Ok(());
    }
    let slots = match args.executor {
        Executor::Local => {
            local_executor::slots(args.jobs, &plan.device, &Machine::here(&plan.device))?
        }
        Executor::Slurm if args.jobs != 1 => {
            bail!("--jobs is for the local executor; on Slurm, --throttle N limits the cells running at once")
        }
        Executor::Slurm => Vec::new(),
    };
    let started = Instant::now();
    let (binary, unavailable) = prepare(&plan, &args)?;
    let by_job = args.executor == Executor::Slurm;
    let failed = match args.executor {
        Executor::Local => {
            let failed = local_executor::run_nodes(&plan, &binary, &unavailable, &slots)?;
            if args.pretrain_only {
                if !failed.is_empty() {
                    bail!("a pre-training node failed (logs above); re-running resumes it");
                }
                println!("pre-training nodes done; --pretrain-only stops here");
                return Ok(());
            }
            local_executor::run_cells(&plan, &binary, &unavailable, failed, &slots)?
        }
        Executor::Slurm => {
            match crate::slurm::submit_and_follow(&plan, &binary, &unavailable, &args.slurm)? {
                Some(failed) => failed,
                None => return Ok(()), // --no-wait
            }
        }
    };
    record(&plan, &binary, &failed, started, by_job)
}

/// Resolves the experiment, the profile and the filters into cells.
pub fn plan(args: &ReproduceArgs) -> Result<Plan> {
    let root = repo::root();
    let manifests = repo::manifests();
    let name = format!("table{}", args.table);
    let experiment = Experiment::read(&manifests, &name)?;
    let profile = experiment.profile(&args.profile)?.clone();
    let device = args
        .device
        .clone()
        .unwrap_or_else(|| profile.device.clone());
    let cells: Vec<PlannedCell> = experiment
        .plan(&manifests, &args.profile)?
        .into_iter()
        .filter(|c| args.dataset.is_empty() || args.dataset.contains(&c.dataset))
        .filter(|c| args.method.is_empty() || args.method.contains(&c.method))
        .filter(|c| args.shot.is_empty() || args.shot.contains(&c.shot))
        .collect();
    if cells.is_empty() {
        bail!(
            "the filters leave no cell of {name} under profile {}",
            args.profile
        );
    }
    Ok(Plan {
        nodes: pretrain_nodes(&cells),
        reports: args
            .reports
            .clone()
            .unwrap_or_else(|| root.join(&profile.reports)),
        runs: args.runs.clone().unwrap_or_else(|| root.join("runs")),
        data_dir: repo::data_dir(args.data_dir.clone()),
        profile_name: args.profile.clone(),
        name,
        experiment,
        device,
        manifests,
        cells,
    })
}

/// Datasets set up (a dataset that cannot be is listed with the reason, and fails its cells only) and
/// the `fewshot` binary built (or the one given).
fn prepare(plan: &Plan, args: &ReproduceArgs) -> Result<(PathBuf, Vec<(String, String)>)> {
    if plan.device.starts_with("cuda") {
        cell_launcher::cuda_ready(
            &cell_launcher::probe_cuda(),
            args.binary.is_some(),
            &format!("profile {}", plan.profile_name),
        )?;
    }
    let mut datasets: Vec<String> = plan.cells.iter().map(|c| c.dataset.clone()).collect();
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
    // the paper rows' ImageNet-pretrained backbone: a cell without its file fails with how to fetch it
    let mut weights: Vec<String> = plan
        .cells
        .iter()
        .filter_map(|c| c.cell.backbone_weights.clone())
        .collect();
    weights.sort();
    weights.dedup();
    if !weights.is_empty() {
        if let Err(e) = fetch_data::run(fetch_data::FetchDataArgs::weights(
            weights.clone(),
            args.data_dir.clone(),
        )) {
            println!(
                "pretrained weights {} are not available: {e:#}",
                weights.join(", ")
            );
        }
    }
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => cell_launcher::build_fewshot(!args.dev_build, plan.device.starts_with("cuda"))?,
    };
    cell_launcher::check_libraries(&binary)?;
    Ok((binary, unavailable))
}

/// The pre-training nodes that are not finished, their folders and configs written.
pub fn stage_nodes(plan: &Plan, unavailable: &[(String, String)]) -> Result<Vec<Staged>> {
    let mut staged = Vec::new();
    for (k, (node, users)) in plan.nodes.iter().enumerate() {
        let dir = plan.runs.join(node.hash());
        // a node of an unavailable dataset: its cells report the dataset
        if unavailable.iter().any(|(d, _)| d == &node.dataset)
            || fewshot::run_folders::pretrain_done(&dir)
        {
            continue;
        }
        std::fs::create_dir_all(&dir)?;
        let config = dir.join(fewshot::run_files::CELL);
        fewshot::atomic_write::write_atomically(&config, toml_text(node)?.as_bytes())?;
        staged.push(Staged {
            index: k,
            label: format!(
                "pre-training {} ({}) for {} cells",
                node.dataset,
                node.hash(),
                users.len()
            ),
            log: dir.join(fewshot::run_files::REPRODUCE_LOG),
            dir,
            config,
        });
    }
    Ok(staged)
}

/// Stages cell `k`: `None` when it is cached or an earlier cell runs it ([`Plan::same_run_as`]); an error line in its log when its dataset is
/// unavailable (`Err` holds the log); a stale result is moved aside first.
pub fn stage_cell(
    plan: &Plan,
    k: usize,
    unavailable: &[(String, String)],
) -> Result<Option<std::result::Result<Staged, PathBuf>>> {
    let c = &plan.cells[k];
    let hash = c.cell.hash();
    let dir = plan.runs.join(&hash);
    let label = format!(
        "[{}/{}] {}/{}/{}/{}-shot/seed {} ({hash})",
        k + 1,
        plan.cells.len(),
        c.group,
        c.method,
        c.dataset,
        c.shot,
        c.seed
    );
    if let Some(j) = plan.same_run_as(k) {
        println!(
            "{label}: the same run as [{}/{}] (an identical configuration)",
            j + 1,
            plan.cells.len()
        );
        return Ok(None);
    }
    let log = dir.join(fewshot::run_files::REPRODUCE_LOG);
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
        return Ok(Some(Err(log)));
    }
    match cache_state(&plan.runs, &plan.data_dir, &plan.manifests, c) {
        CacheState::Done => {
            println!("{label}: cached");
            return Ok(None);
        }
        CacheState::Stale(why) => {
            // held while the folder is moved, so that no process starts work in it meanwhile
            let Some(_held) = fewshot::run_lock::try_lock(&dir)? else {
                println!(
                    "{label}: FAILED (stale, and another process works in its folder; its log {}): run again when it has finished",
                    log.display()
                );
                return Ok(Some(Err(log)));
            };
            let aside = plan
                .runs
                .join(format!("{hash}.stale-{}", std::process::id()));
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
    let config = dir.join(fewshot::run_files::CELL);
    fewshot::atomic_write::write_atomically(&config, toml_text(&c.cell)?.as_bytes())?;
    Ok(Some(Ok(Staged {
        index: k,
        label,
        dir,
        config,
        log,
    })))
}

/// Writes the report (and, for the full profile with every cell done, the README's results block).
/// `by_job`: the Slurm report job wrote it (`fewshot report`, the same function) and it is only listed.
fn record(
    plan: &Plan,
    binary: &Path,
    failed: &[(usize, PathBuf)],
    started: Instant,
    by_job: bool,
) -> Result<()> {
    let root = repo::root();
    let out = &plan.reports;
    if by_job {
        println!(
            "\nreport written by the Slurm report job into {} ({} for all cells)",
            out.display(),
            human(started.elapsed().as_secs_f64())
        );
        return finish(plan, failed);
    }
    let build = BuildInfo::collect(&root, binary, &plan.device);
    let runs = PlanRuns {
        manifests: &plan.manifests,
        experiment: &plan.experiment,
        profile: &plan.profile_name,
        plan: &plan.cells,
        runs: &plan.runs,
    };
    let outcome = report_plan(out, runs, Missing::Failed(failed), build)?;
    println!(
        "\nreport ({} files, {} for all cells):",
        outcome.files.len(),
        human(started.elapsed().as_secs_f64())
    );
    for f in &outcome.files {
        println!("  {}", f.strip_prefix(&root).unwrap_or(f).display());
    }
    if let Some(why) = outcome.figures_skipped {
        println!("  figures not drawn: {why}");
    }
    finish(plan, failed)
}

/// The README's results block (full profile, every cell done) and the exit status.
fn finish(plan: &Plan, failed: &[(usize, PathBuf)]) -> Result<()> {
    let (root, out) = (repo::root(), &plan.reports);
    if plan.profile_name == "full" && failed.is_empty() {
        let table = out.join(format!("{}.md", plan.name));
        let readme_path = root.join("README.md");
        let readme = std::fs::read_to_string(&readme_path)?;
        let block = fewshot::report::readme_block::expected_block(
            &plan.name,
            std::fs::read_to_string(&table).ok().as_deref(),
        );
        let updated = fewshot::report::readme_block::with_block(&readme, &plan.name, &block)?;
        fewshot::atomic_write::write_atomically(&readme_path, updated.as_bytes())?;
        println!(
            "  README.md results block updated from {} (commit both)",
            table.display()
        );
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} cells failed (logs above); re-running picks up where it stopped",
            failed.len(),
            plan.cells.len()
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

fn toml_text(cell: &CellConfig) -> Result<String> {
    Ok(format!(
        "# resolved by `cargo xtask reproduce` from manifests/experiments/; cell hash {}\n{}",
        cell.hash(),
        toml::to_string_pretty(cell)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smoke profile's LWFM-SPM cells are one configuration in the paper's group and the
    /// controlled one: each runs once, and a failure of that run fails both rows.
    #[test]
    fn a_cell_in_two_groups_is_one_run_and_fails_in_both() {
        let tmp = tempfile::tempdir().unwrap();
        let plan = plan(&ReproduceArgs::smoke(tmp.path().join("runs"))).unwrap();
        let shared: Vec<(usize, usize)> = (0..plan.cells.len())
            .filter_map(|k| plan.same_run_as(k).map(|j| (j, k)))
            .collect();
        assert!(!shared.is_empty(), "the smoke profile shares a run");
        for &(j, k) in &shared {
            assert!(j < k);
            assert_eq!(plan.cells[j].cell.hash(), plan.cells[k].cell.hash());
            assert_ne!(plan.cells[j].group, plan.cells[k].group);
        }
        let distinct: std::collections::BTreeSet<String> =
            plan.cells.iter().map(|c| c.cell.hash()).collect();
        assert_eq!(distinct.len() + shared.len(), plan.cells.len());
        let (j, k) = shared[0];
        let log = PathBuf::from("log");
        let failed = plan.with_shared_failures(vec![(j, log.clone())]);
        assert_eq!(failed, vec![(j, log.clone()), (k, log.clone())]);
        assert_eq!(
            plan.with_shared_failures(vec![(k, log.clone())]),
            vec![(k, log)]
        );
    }
}
