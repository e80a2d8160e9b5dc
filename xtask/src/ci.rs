//! `cargo xtask ci`: what `.ci/run` runs, in order, stopping at the first failure: formatting,
//! clippy with warnings as errors, and the whole test suite (which includes the end-to-end fetch and
//! prepare of the real miniImageNet and Omniglot mirror, so FEWSHOT_MIRROR must point at it).

use std::path::PathBuf;
use std::process::Command;

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
    let steps: [(&str, &[&str]); 3] = [
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
    ];
    for (name, cargo_args) in steps {
        println!("== ci: {name}: cargo {}", cargo_args.join(" "));
        let status = Command::new(env!("CARGO"))
            .args(cargo_args)
            .current_dir(&root)
            .env("FEWSHOT_MIRROR", &mirror)
            .status()
            .with_context(|| format!("running cargo {}", cargo_args.join(" ")))?;
        if !status.success() {
            bail!("ci step `{name}` failed ({status})");
        }
    }
    println!("== ci: all steps passed");
    Ok(())
}
