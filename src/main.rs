//! The `fewshot` binary: thin CLI over the library. Subcommands inspect stores and episode files;
//! training and evaluation join them with the learning core.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

// candle's CPU kernels allocate and free large scratch buffers on every op; with glibc's malloc those
// become mmap/munmap calls and page faults (half the run time of a small-model evaluation, measured);
// `main` also tells mimalloc to keep freed pages (see `fewshot::allocator`).
#[global_allocator]
static GLOBAL: fewshot::allocator::MiMalloc = fewshot::allocator::MiMalloc;
use fewshot::data::frozen_episodes::FrozenEpisodes;
use fewshot::data::store::Store;

#[derive(Parser)]
#[command(
    name = "fewshot",
    version,
    about = "Reproducible few-shot classification benchmarks"
)]
struct Cli {
    /// Log more (-v: info, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a store's header: classes, image count, fingerprint, pixel statistics, provenance.
    StoreInfo {
        /// A `<split>.store` file under datasets/<name>/.
        store: PathBuf,
    },
    /// Write a small store cut from a prepared one (the first N classes × M images by name), e.g.
    /// to take real images to a machine that cannot prepare data (the GPU machine has no Rust).
    StoreSubset {
        /// The source `<split>.store`.
        store: PathBuf,
        /// Classes to keep.
        #[arg(long)]
        classes: usize,
        /// Images to keep per class.
        #[arg(long)]
        images: usize,
        /// The subset's path (a `.store` file; written atomically).
        #[arg(long)]
        out: PathBuf,
    },
    /// Train one cell (resumes from runs/<cell-hash>/ when interrupted).
    #[cfg(feature = "train")]
    Train(RunArgs),
    /// Evaluate a trained cell on its frozen test episodes (writes episodes.jsonl and eval.json).
    #[cfg(feature = "train")]
    Eval {
        #[command(flatten)]
        run: RunArgs,
        /// Evaluate the seeded initialisation instead of the trained checkpoint.
        #[arg(long, conflicts_with = "checkpoint")]
        untrained: bool,
        /// Evaluate this checkpoint file (e.g. the CI gate's committed one) instead of the run's
        /// best; outputs are named after the file.
        #[arg(long, conflicts_with = "torch_backbone")]
        checkpoint: Option<PathBuf>,
        /// Score another codebase's PyTorch checkpoint of this cell's backbone (e.g. a RENet
        /// ResNet-12 `.pth`) on the frozen episodes, with the cell's (parameter-free or seeded) head.
        #[arg(long, conflicts_with = "untrained")]
        torch_backbone: Option<PathBuf>,
        /// How that checkpoint names its parameters: a `manifests/key-maps/` name (default: this
        /// suite's own names).
        #[arg(long, requires = "torch_backbone")]
        key_map: Option<String>,
        /// Score the frozen validation episodes instead of the test episodes (for choosing a
        /// recipe; writes episodes-val*.jsonl and eval-val*.json).
        #[arg(long)]
        val: bool,
    },
    /// Train then evaluate one cell, holding its run folder's lock and recording each phase's wall
    /// time in `phases.json`: what `cargo xtask reproduce` runs per cell, locally or as a Slurm task.
    #[cfg(feature = "train")]
    Cell {
        #[command(flatten)]
        run: RunArgs,
        /// Train only (a shared pre-training node has no test evaluation).
        #[arg(long)]
        train_only: bool,
    },
    /// Write an experiment's report from the run folders as they stand (what a Slurm report job runs
    /// once the plan's cells are over): a planned cell without a result is reported as failed.
    Report {
        /// The table (`manifests/experiments/table<N>.toml`).
        #[arg(long)]
        table: u32,
        #[arg(long)]
        profile: String,
        /// Only the cells whose hashes this file lists, one per line (default: the whole plan).
        #[arg(long)]
        cells: Option<PathBuf>,
        /// The report folder (default: the profile's).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The device the cells ran on (for the provenance).
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(long, default_value = "manifests")]
        manifests: PathBuf,
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
    },
    /// Show or prune the run folders under runs/.
    Runs {
        #[command(subcommand)]
        action: RunsAction,
    },
    /// Export a frozen episode file as plain CSV (episode,label,class,role,file) for other codebases.
    ExportEpisodes {
        /// A `manifests/episodes/<dataset>/*.episodes.json.gz` file.
        episodes: PathBuf,
        /// Output CSV path (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RunsAction {
    /// One line per run folder: cell, status, accuracy, size.
    List {
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
    },
    /// Remove run folders that no profile of any experiment and no CI gate plans (and stale ones).
    Gc {
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
        #[arg(long, default_value = "manifests")]
        manifests: PathBuf,
        /// Show what would go, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// What `train` and `eval` take.
#[cfg(feature = "train")]
#[derive(clap::Args)]
struct RunArgs {
    /// The cell: a fully resolved TOML config (see manifests/cells/).
    #[arg(long)]
    config: PathBuf,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    device: fewshot::device::DeviceSpec,
    /// Where datasets live (default: ./datasets, or FEWSHOT_DATA).
    #[arg(long, env = "FEWSHOT_DATA", default_value = "datasets")]
    data_dir: PathBuf,
    /// The manifests folder.
    #[arg(long, default_value = "manifests")]
    manifests: PathBuf,
    /// Where run folders go.
    #[arg(long, default_value = "runs")]
    runs: PathBuf,
    /// Switch on a deliberate fault to prove the CI gate fails (shuffle-support-labels, no-lwe,
    /// wrong-normalisation, train-classes-in-test, swap-red-blue, imagenet-normalisation,
    /// crop-off-by-one, decoder-off-by-one); the cell then hashes differently.
    #[arg(long, value_parser = fewshot::sabotage::Sabotage::parse)]
    sabotage: Option<fewshot::sabotage::Sabotage>,
}

#[cfg(feature = "train")]
impl RunArgs {
    fn open(
        &self,
    ) -> fewshot::Result<(
        fewshot::manifest::cell::CellConfig,
        fewshot::model::run_context::RunPaths,
        candle_core::Device,
    )> {
        let text = std::fs::read_to_string(&self.config)
            .map_err(|e| fewshot::Error::io(&self.config, e))?;
        let mut cell =
            fewshot::manifest::cell::CellConfig::from_toml(&text).map_err(|message| {
                fewshot::Error::Manifest {
                    path: self.config.clone(),
                    message,
                }
            })?;
        if self.sabotage.is_some() {
            cell.sabotage = self.sabotage;
        }
        let paths = fewshot::model::run_context::RunPaths {
            data_dir: self.data_dir.clone(),
            manifests: self.manifests.clone(),
            runs: self.runs.clone(),
        };
        Ok((cell, paths, self.device.open()?))
    }
}

fn main() {
    fewshot::allocator::keep_freed_pages();
    fewshot::threads::pin_thread_count();
    let cli = Cli::parse();
    fewshot::logging::init(cli.verbose);
    if let Err(e) = run(cli.command) {
        eprintln!("error: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            eprintln!("  caused by: {cause}");
            source = cause.source();
        }
        std::process::exit(2);
    }
}

fn run(command: Command) -> fewshot::Result<()> {
    match command {
        Command::StoreSubset {
            store,
            classes,
            images,
            out,
        } => store_subset(&store, classes, images, &out),
        Command::StoreInfo { store } => store_info(&store),
        #[cfg(feature = "train")]
        Command::Train(args) => {
            let (cell, paths, device) = args.open()?;
            // as `fewshot cell` does: one process at a time trains a run folder
            let (_held, _) = fewshot::run_lock::lock(&paths.run_dir(&cell))?;
            let outcome = fewshot::train::trainer::train_cell(&cell, &paths, &device, None)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&outcome).expect("plain struct")
            );
            Ok(())
        }
        #[cfg(feature = "train")]
        Command::Eval {
            run,
            untrained,
            checkpoint,
            torch_backbone,
            key_map,
            val,
        } => eval(&run, untrained, checkpoint, torch_backbone, key_map, val),
        #[cfg(feature = "train")]
        Command::Cell { run, train_only } => run_cell(&run, train_only),
        Command::Report {
            table,
            profile,
            cells,
            out,
            device,
            manifests,
            runs,
        } => report(table, &profile, cells, out, &device, &manifests, &runs),
        Command::Runs {
            action: RunsAction::List { runs },
        } => runs_list(&runs),
        Command::Runs {
            action:
                RunsAction::Gc {
                    runs,
                    manifests,
                    dry_run,
                },
        } => runs_gc(&runs, &manifests, dry_run),
        Command::ExportEpisodes { episodes, out } => {
            let frozen = FrozenEpisodes::read(&episodes)?;
            let csv = frozen.to_csv();
            match out {
                Some(path) => fewshot::atomic_write::write_atomically(&path, csv.as_bytes()),
                None => {
                    use std::io::Write;
                    // a closed pipe (`| head`) is not an error
                    let _ = std::io::stdout().lock().write_all(csv.as_bytes());
                    Ok(())
                }
            }
        }
    }
}

/// `fewshot store-subset`: N classes × M images of a store, for taking to a machine without Rust.
fn store_subset(store: &Path, classes: usize, images: usize, out: &Path) -> fewshot::Result<()> {
    let source = Store::open(store)?;
    let header = fewshot::data::store_subset::write_subset(&source, classes, images, out)?;
    let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    println!(
        "{}: {} classes × {images} images ({} MB), fingerprint {}",
        out.display(),
        header.classes.len(),
        size / 1_000_000,
        header.fingerprint
    );
    Ok(())
}

/// `fewshot store-info`: a store's header as JSON.
fn store_info(store: &Path) -> fewshot::Result<()> {
    let store = Store::open(store)?;
    let h = &store.header;
    let summary = serde_json::json!({
        "dataset": h.dataset, "split": h.split, "split_variant": h.split_variant,
        "source": h.source, "source_sha256": h.source_sha256,
        "shape": [h.height, h.width, h.channels], "classes": h.classes.len(), "images": h.count,
        "fingerprint": h.fingerprint, "decoder": h.decoder, "transform": h.transform,
        "pixel_mean": h.pixel_mean, "pixel_std": h.pixel_std,
        "normalization": { "mean": h.normalization_mean, "std": h.normalization_std, "source": h.normalization_source },
        "prepared_by": h.prepared_by,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).expect("json value")
    );
    Ok(())
}

/// `fewshot eval`: the cell's best checkpoint (or the weights named) on its frozen test (or
/// validation) episodes.
#[cfg(feature = "train")]
fn eval(
    run: &RunArgs,
    untrained: bool,
    checkpoint: Option<PathBuf>,
    torch_backbone: Option<PathBuf>,
    key_map: Option<String>,
    val: bool,
) -> fewshot::Result<()> {
    let (cell, paths, device) = run.open()?;
    use fewshot::eval::cell_eval::{eval_cell_on, Episodes, Weights};
    let weights = match (untrained, checkpoint, torch_backbone) {
        (true, _, _) => Weights::Untrained,
        (false, Some(file), _) => Weights::File(file),
        (false, None, Some(file)) => Weights::TorchBackbone {
            checkpoint: file,
            key_map: key_map
                .map(|name| fewshot::manifest::key_map::KeyMap::read(&paths.manifests, &name))
                .transpose()?,
        },
        (false, None, None) => Weights::BestOfRun,
    };
    let on = if val { Episodes::Val } else { Episodes::Test };
    let s = eval_cell_on(&cell, &paths, &device, &weights, on)?;
    println!(
        "{} {} {}-shot: {:.2} ± {:.2} % over {} episodes ({})",
        s.dataset,
        s.method,
        s.shot,
        100.0 * s.mean,
        100.0 * s.ci95,
        s.n,
        s.ci_formula
    );
    Ok(())
}

/// `fewshot runs list`: every run folder with its cell, status, accuracy and size.
fn runs_list(runs: &Path) -> fewshot::Result<()> {
    let all = fewshot::run_folders::list(runs)?;
    println!(
        "{:<18} {:<16} {:<9} {:>4} {:<10} {:>8} {:>9}",
        "folder", "dataset", "method", "shot", "status", "accuracy", "MB"
    );
    for r in &all {
        println!(
            "{:<18} {:<16} {:<9} {:>4} {:<10} {:>8} {:>9.1}",
            r.folder,
            r.dataset.as_deref().unwrap_or("?"),
            r.method.as_deref().unwrap_or("?"),
            r.shot.map(|s| s.to_string()).unwrap_or_default(),
            r.status,
            r.accuracy
                .map(|a| format!("{:.2}%", 100.0 * a))
                .unwrap_or_default(),
            r.bytes as f64 / 1e6
        );
    }
    println!(
        "{} run folders, {:.1} MB",
        all.len(),
        all.iter().map(|r| r.bytes).sum::<u64>() as f64 / 1e6
    );
    Ok(())
}

/// `fewshot runs gc`: removes (or, dry, lists) the run folders no current plan produces.
fn runs_gc(runs: &Path, manifests: &Path, dry_run: bool) -> fewshot::Result<()> {
    let keep = fewshot::run_folders::planned_hashes(manifests)?;
    let removed = fewshot::run_folders::gc(runs, &keep, dry_run)?;
    for (path, bytes) in &removed {
        println!(
            "{} {} ({:.1} MB)",
            if dry_run { "would remove" } else { "removed" },
            path.display(),
            *bytes as f64 / 1e6
        );
    }
    println!(
        "{} folders, {:.1} MB{}",
        removed.len(),
        removed.iter().map(|(_, b)| b).sum::<u64>() as f64 / 1e6,
        if dry_run { " (dry run)" } else { "" }
    );
    Ok(())
}

/// `fewshot cell`: train, then evaluate on the test episodes, under the run folder's lock.
#[cfg(feature = "train")]
fn run_cell(args: &RunArgs, train_only: bool) -> fewshot::Result<()> {
    use fewshot::run_folders::{record_phase, Phase};
    use fewshot::run_lock::lock;
    let (cell, paths, device) = args.open()?;
    let dir = paths.runs.join(cell.hash());
    let (_held, waited) = lock(&dir)?;
    if waited && dir.join(fewshot::run_files::EVAL).is_file() {
        println!(
            "{}: finished by another process while this one waited for its lock",
            dir.display()
        );
        return Ok(());
    }
    // the trainer adds the train phase's time at each commit (a killed process keeps what it did)
    fewshot::train::trainer::train_cell(&cell, &paths, &device, None)?;
    if train_only {
        return Ok(());
    }
    use fewshot::eval::cell_eval::{eval_cell_on, Episodes, Weights};
    let t = std::time::Instant::now();
    let s = eval_cell_on(&cell, &paths, &device, &Weights::BestOfRun, Episodes::Test)?;
    record_phase(
        &dir,
        Phase::Eval,
        &args.device.to_string(),
        t.elapsed().as_secs_f64(),
    )?;
    println!(
        "{} {} {}-shot: {:.2} ± {:.2} % over {} episodes",
        s.dataset,
        s.method,
        s.shot,
        100.0 * s.mean,
        100.0 * s.ci95,
        s.n
    );
    Ok(())
}

/// `fewshot report`: the plan's report from its run folders.
fn report(
    table: u32,
    profile: &str,
    cells: Option<PathBuf>,
    out: Option<PathBuf>,
    device: &str,
    manifests: &std::path::Path,
    runs: &std::path::Path,
) -> fewshot::Result<()> {
    use fewshot::manifest::experiment::Experiment;
    use fewshot::report::plan_report::{report_plan, Missing, PlanRuns};
    let experiment = Experiment::read(manifests, &format!("table{table}"))?;
    let mut plan = experiment.plan(manifests, profile)?;
    if let Some(list) = &cells {
        let text = std::fs::read_to_string(list).map_err(|e| fewshot::Error::io(list, e))?;
        let wanted: Vec<&str> = text.lines().map(str::trim).collect();
        plan.retain(|c| wanted.contains(&c.cell.hash().as_str()));
    }
    let out = match out {
        Some(o) => o,
        None => PathBuf::from(&experiment.profile(profile)?.reports),
    };
    let binary = std::env::current_exe().map_err(|e| fewshot::Error::io("fewshot", e))?;
    let root = std::env::current_dir().map_err(|e| fewshot::Error::io(".", e))?;
    let build = fewshot::report::provenance::BuildInfo::collect(&root, &binary, device);
    let runs = PlanRuns {
        manifests,
        experiment: &experiment,
        profile,
        plan: &plan,
        runs,
    };
    let outcome = report_plan(&out, runs, Missing::AllFailed, build)?;
    println!("report: {} files in {}", outcome.files.len(), out.display());
    for f in &outcome.files {
        println!("  {}", f.display());
    }
    Ok(())
}
