//! `cargo xtask`: the suite's entry points. `fetch-data` downloads, verifies and prepares datasets;
//! `ci` runs the checks CI runs; `cuda-env` sets up the CUDA build; `regress` is the accuracy gate. Each subcommand lives in its own file.

mod cell_launcher;
mod ci;
mod cuda_env;
mod dry_run;
mod fetch_data;
mod local_executor;
#[cfg(test)]
mod local_jobs_tests;
mod regress;
mod repo;
mod reproduce;
mod slurm;
#[cfg(test)]
mod slurm_cluster;
mod slurm_script;
#[cfg(test)]
mod slurm_tests;
mod step_costs;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "fewshot's set-up and reproduction commands"
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
    /// Download, SHA-256-check and prepare datasets (stores + frozen episodes).
    FetchData(fetch_data::FetchDataArgs),
    /// Train or evaluate one cell with the release `fewshot` binary (checks CUDA libraries first).
    Cell(cell_launcher::CellArgs),
    /// Set up what the `cuda` build needs (system toolkit, or NVIDIA's CUDA 13 + cuDNN 9 wheels in
    /// .cuda/) and print its environment: eval "$(cargo xtask cuda-env)".
    CudaEnv(cuda_env::CudaEnvArgs),
    /// Run what CI runs: formatting, lints, the test suite and the accuracy gate (needs the mirror).
    Ci(ci::CiArgs),
    /// Train and evaluate a results table's cells and write its report (tables, paired tests, plots).
    Reproduce(Box<reproduce::ReproduceArgs>),
    /// The CI accuracy gate: gate cells on real data against manifests/baselines/ci.toml.
    Regress(regress::RegressArgs),
}

fn main() {
    let cli = Cli::parse();
    fewshot::logging::init(cli.verbose);
    let result = match cli.command {
        Command::FetchData(args) => fetch_data::run(args),
        Command::Ci(args) => ci::run(args),
        Command::CudaEnv(args) => cuda_env::run(args),
        Command::Cell(args) => cell_launcher::run(args),
        Command::Regress(args) => regress::run(args),
        Command::Reproduce(args) => reproduce::run(*args),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        for cause in e.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        std::process::exit(2);
    }
}
