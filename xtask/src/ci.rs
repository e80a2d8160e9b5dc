//! `cargo xtask ci`: what `.ci/run` runs, in order, stopping at the first failure: formatting,
//! clippy with warnings as errors, the whole test suite (which includes the end-to-end fetch and
//! prepare of the real miniImageNet and Omniglot mirror, so FEWSHOT_MIRROR must point at it), the docs
//! without warnings, the accuracy gate's training gates (`cargo xtask regress --gate train/ --jobs 2`: real
//! training and evaluation on CPU against `manifests/baselines/ci.toml`; its evaluation gates ran in
//! the test step, as `the_committed_checkpoints_pass_the_evaluation_gates`), table 1's `smoke` profile end to end into fresh run folders
//! with `--jobs 2` (every cell trained and evaluated, the report's tables, provenance and figures
//! checked to exist), the Slurm executor on a real one-node cluster (`slurm_tests`, whose two tasks at
//! once must give the per-episode files and table of that run's ProtoNet cells; the stricter check of
//! `--jobs 2` against one cell after another is `local_jobs_tests`, run by hand), and
//! the CUDA code compiled and linted with `--features cuda` in the environment `cargo xtask cuda-env`
//! sets up (no GPU is needed to compile; none runs in CI). The CUDA step
//! took 13 minutes on the 2-core build machine with a cold cache (candle's kernels are compiled with
//! nvcc). Each step's wall-clock is printed, and a table of them at the end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::repo;

#[derive(Args)]
pub struct CiArgs {
    /// The dataset mirror the tests read (default: FEWSHOT_MIRROR, else ../shared/datasets).
    #[arg(long)]
    mirror: Option<PathBuf>,
}

pub fn run(args: CiArgs) -> Result<()> {
    let root = repo::root();
    let mirror = args
        .mirror
        .or_else(|| std::env::var_os("FEWSHOT_MIRROR").map(PathBuf::from))
        .unwrap_or_else(|| root.join("../shared/datasets"));
    if !mirror.join("mini-imagenet").is_dir() || !mirror.join("omniglot").is_dir() {
        bail!(
            "the dataset mirror {} is missing (it needs mini-imagenet/ and omniglot/); CI cannot check anything without real data: set FEWSHOT_MIRROR or --mirror",
            mirror.display()
        );
    }
    let mirror = mirror
        .canonicalize()
        .with_context(|| mirror.display().to_string())?;
    let steps: [(&str, &[&str]); 4] = [
        ("format", &["fmt", "--all", "--check"]),
        (
            "lints",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        ("tests", &["test", "--workspace"]),
        ("docs", &["doc", "--workspace", "--no-deps"]),
    ];
    let mut clock = StepClock::default();
    for (name, cargo_args) in steps {
        println!("== ci: {name}: cargo {}", cargo_args.join(" "));
        clock.step(name, || {
            let status = crate::repo::cargo()
                .args(cargo_args)
                .current_dir(&root)
                .env("FEWSHOT_MIRROR", &mirror)
                .env("RUSTDOCFLAGS", "-D warnings")
                .status()
                .with_context(|| format!("running cargo {}", cargo_args.join(" ")))?;
            if !status.success() {
                bail!("ci step `{name}` failed ({status})");
            }
            Ok(())
        })?;
    }
    // The evaluation gates (committed checkpoints on frozen episodes) ran in the test step
    // (`the_committed_checkpoints_pass_the_evaluation_gates`: the same rule and files); here the
    // training gates, which train their cells from scratch.
    println!("== ci: accuracy gate: cargo xtask regress --gate train/ --jobs 2 (the evaluation gates ran in `tests`)");
    // the gate fetches its datasets through the same mirror
    std::env::set_var("FEWSHOT_MIRROR", &mirror);
    clock.step("accuracy gate (training)", || {
        // two gates at once on one thread each, the same per-episode files: 216 s against 313 s one
        // after another on two threads, back to back on the 2-core EPYC (benches/RESULTS.md)
        let mut gates = crate::regress::RegressArgs::only("train/");
        gates.jobs = 2;
        crate::regress::run(gates)
    })?;
    clock.step("smoke reproduction", || smoke_reproduction(&root))?;
    executor_tests(&root, &mut clock)?;
    println!("== ci: cuda: cargo clippy --features cuda (environment from `cargo xtask cuda-env`)");
    clock.step("cuda", || cuda_check(&root))?;
    clock.summary();
    println!("== ci: all steps passed");
    Ok(())
}

/// The CUDA code compiled and linted with `--features cuda` (no GPU needed).
fn cuda_check(root: &Path) -> Result<()> {
    // a system toolkit must not decide what CI checks: always the pinned wheels (kept outside the
    // clone when .ci/run gives FEWSHOT_CUDA_HOME)
    let env = crate::cuda_env::setup(&crate::cuda_env::CudaEnvArgs {
        wheels: true,
        compute_cap: "90".into(),
        ..Default::default()
    })?;
    // beside the CPU build (its own folder: other features, other toolchain environment)
    let cuda_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("cuda-check");
    let status = crate::repo::cargo()
        .args([
            "clippy",
            "-p",
            "fewshot",
            "--features",
            "cuda",
            "--all-targets",
            "--target-dir",
        ])
        .arg(&cuda_dir)
        .args(["--", "-D", "warnings"])
        .envs(env)
        .current_dir(root)
        .status()
        .context("running cargo clippy for the CUDA compile check")?;
    if !status.success() {
        bail!("ci step `cuda` failed ({status})");
    }
    Ok(())
}

/// The executors' ignored tests (they run `reproduce`, which builds the binary under the build lock a
/// plain `cargo test` holds): `slurm_tests` against a real one-node cluster,
/// which, where Slurm is not installed, is said loudly not to have run.
fn executor_tests(root: &Path, clock: &mut StepClock) -> Result<()> {
    let installed = ["slurmctld", "slurmd", "munged", "sbatch"].iter().all(|p| {
        Command::new("sh")
            .args(["-c", &format!("command -v {p}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let mut filters = Vec::new();
    if installed {
        filters.push("slurm_tests");
    } else {
        println!("== ci: slurm: NOT RUN: slurm-wlm and munge are not installed here (apt-get install slurm-wlm munge)");
    }
    for filter in filters {
        println!("== ci: executors: cargo test --workspace {filter} -- --ignored");
        clock.step(filter, || {
            // `--workspace` as in the test step: with `-p xtask` alone cargo resolves the shared
            // dependencies' features differently and rebuilds the library and xtask (a minute here)
            let status = crate::repo::cargo()
                .args([
                    "test",
                    "--workspace",
                    filter,
                    "--",
                    "--ignored",
                    "--nocapture",
                ])
                // the smoke step's run as the reference (one thread a cell, as the test runs its own)
                .env(SLURM_TEST_LOCAL_RUNS, root.join(SMOKE_RUNS))
                .current_dir(root)
                .status()
                .with_context(|| format!("running {filter}"))?;
            if !status.success() {
                bail!("ci step `{filter}` failed ({status})");
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Names, for `slurm_tests`, a folder holding the local executor's finished run of its two cells
/// (`<hash>/` each, and `report/` with their table): the smoke step's run folders, so they are not
/// trained again.
pub const SLURM_TEST_LOCAL_RUNS: &str = "FEWSHOT_SLURM_TEST_LOCAL_RUNS";

/// The smoke step's run folders (relative to the clone).
const SMOKE_RUNS: &str = "reports/smoke/ci-runs";

/// The smoke report's files besides its figures.
const SMOKE_REPORT_FILES: [&str; 5] = [
    "table1.md",
    "table1.csv",
    "table1-paired.md",
    "table1-paired.csv",
    "provenance.json",
];

/// `cargo xtask reproduce --table 1 --profile smoke --dev-build --jobs 2` into fresh run folders (a
/// cached cell would prove nothing), then the report's files must all be there; then, from the same
/// run folders (every cell cached), the report of the two ProtoNet cells alone, which the Slurm step
/// compares with its own. One thread per cell (`RAYON_NUM_THREADS=1`, which decides the order of
/// floating-point reductions), as the Slurm step's tasks. Until 2026-12-08 the ProtoNet cells were
/// trained again here with `--jobs 1` and compared (`local_jobs_tests`' check): 68 s of one core
/// while the other idled; CI's Slurm step still compares two cells at once with this run.
fn smoke_reproduction(root: &Path) -> Result<()> {
    println!("== ci: reproduce: table 1, smoke profile, --jobs 2, fresh run folders");
    // one thread per cell here only: the later steps inherit what was set before
    let before = std::env::var_os("RAYON_NUM_THREADS");
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let result = smoke_runs(root);
    match before {
        Some(v) => std::env::set_var("RAYON_NUM_THREADS", v),
        None => std::env::remove_var("RAYON_NUM_THREADS"),
    }
    result
}

/// [`smoke_reproduction`]'s run, checks and ProtoNet report.
fn smoke_runs(root: &Path) -> Result<()> {
    let runs = root.join(SMOKE_RUNS);
    if runs.exists() {
        std::fs::remove_dir_all(&runs).with_context(|| runs.display().to_string())?;
    }
    // an earlier report must not stand in for this one
    let reports = root.join("reports/smoke");
    for old in SMOKE_REPORT_FILES {
        let _ = std::fs::remove_file(reports.join(old));
    }
    let _ = std::fs::remove_dir_all(reports.join("figures"));
    let mut two = crate::reproduce::ReproduceArgs::smoke(runs.clone());
    two.jobs = 2;
    crate::reproduce::run(two)?;
    let missing: Vec<&str> = SMOKE_REPORT_FILES
        .into_iter()
        .filter(|f| !reports.join(f).is_file())
        .collect();
    let figures = std::fs::read_dir(reports.join("figures"))
        .map(|d| d.filter_map(|e| e.ok()).count())
        .unwrap_or(0);
    if !missing.is_empty() || figures < 20 {
        bail!(
            "the smoke report in {} is incomplete: missing {missing:?}, {figures} figure files",
            reports.display()
        );
    }
    println!("== ci: reproduce: complete report ({figures} figure files)");
    println!("== ci: reproduce: the ProtoNet cells' report from the same run folders (the Slurm step's reference)");
    let mut protonet = crate::reproduce::ReproduceArgs::smoke(runs.clone());
    protonet.method = vec!["protonet".into()];
    protonet.reports = Some(runs.join("report"));
    crate::reproduce::run(protonet)?;
    Ok(())
}

/// Each step's wall-clock, printed as it ends and as a table after the last one (what the README's
/// CI figures and `benches/RESULTS.md` are read from).
#[derive(Default)]
struct StepClock {
    steps: Vec<(String, Duration)>,
}

impl StepClock {
    fn step(&mut self, name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
        let start = Instant::now();
        let result = f();
        let took = start.elapsed();
        println!("== ci: {name}: {:.1} s", took.as_secs_f64());
        self.steps.push((name.to_string(), took));
        if result.is_err() {
            self.summary();
        }
        result
    }

    fn summary(&self) {
        println!("== ci: step times");
        for (name, took) in &self.steps {
            println!("   {name:<26} {:>7.1} s", took.as_secs_f64());
        }
        let total: Duration = self.steps.iter().map(|(_, t)| *t).sum();
        println!("   {:<26} {:>7.1} s", "total", total.as_secs_f64());
    }
}
