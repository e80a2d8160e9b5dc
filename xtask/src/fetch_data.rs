//! `cargo xtask fetch-data`: download (or copy from a mirror), SHA-256-check and prepare datasets,
//! then print a table of what was fetched, verified and skipped.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use fewshot::data::dataset_setup::{
    set_up_dataset, verify_stores, DatasetReady, EpisodeFileStatus,
};
use fewshot::fetch::fetch_sources;
use fewshot::fetch::{
    fetch_dataset, http_agent, ArchiveOutcome, ArchiveStatus, FetchOptions, HttpAgent, Mirror,
};
use fewshot::manifest::weights::load_weights;
use fewshot::manifest::{load_dataset, DATASETS};

use crate::repo;

#[derive(Args)]
pub struct FetchDataArgs {
    /// Dataset to fetch (repeatable), or `all`.
    #[arg(long, default_value = "all")]
    dataset: Vec<String>,
    /// A mirror tried before the public URLs: a folder or URL laid out as `<mirror>/<dataset>/<file>`.
    /// Repeatable. Also read from FEWSHOT_MIRROR (several separated by commas).
    #[arg(long)]
    mirror: Vec<String>,
    /// Where datasets live (default: ./datasets, or FEWSHOT_DATA).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Re-hash the archives and stores on disk; download and prepare nothing.
    #[arg(long)]
    verify_only: bool,
    /// Pretrained weights to fetch as well (`manifests/weights/<NAME>.toml`), e.g. `resnet18-imagenet`.
    #[arg(long)]
    weights: Vec<String>,
    /// Use another split variant than the manifest's default (e.g. `chen` for CUB).
    #[arg(long)]
    split: Option<String>,
}

impl FetchDataArgs {
    /// What `regress` and `reproduce` pass to make sure the datasets they need are ready (the same
    /// verified path; a second call finds the stamps and returns at once).
    pub fn datasets(names: Vec<String>, data_dir: Option<PathBuf>) -> Self {
        Self {
            dataset: names,
            mirror: Vec::new(),
            data_dir,
            verify_only: false,
            weights: Vec::new(),
            split: None,
        }
    }

    /// What `reproduce` passes to fetch the pretrained weights its cells name (no dataset).
    pub fn weights(names: Vec<String>, data_dir: Option<PathBuf>) -> Self {
        Self {
            weights: names,
            ..Self::datasets(vec!["all".into()], data_dir)
        }
    }
}

pub fn run(args: FetchDataArgs) -> Result<()> {
    let (names, options) = plan(&args)?;
    let agent = http_agent();
    let mut outcomes: Vec<ArchiveOutcome> = Vec::new();
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    for name in &names {
        let manifest = load_dataset(&options.manifests, name)?;
        if !args.verify_only {
            println!(
                "{}: {}\n  licence: {}",
                manifest.name, manifest.title, manifest.licence
            );
        }
        let started = Instant::now();
        if args.verify_only {
            match verify_dataset(
                &manifest,
                &options,
                args.split.as_deref(),
                &agent,
                &mut outcomes,
            ) {
                Ok(line) => lines.push(line),
                Err(e) => failures.push(format!("{name}: {e:#}")),
            }
            continue;
        }
        match set_up_dataset(
            &manifest,
            &options,
            args.split.as_deref(),
            &agent,
            &mut outcomes,
        ) {
            Ok(ready) => {
                lines.extend(ready_lines(name, &manifest, &ready));
                tracing::info!("{name} done in {:.1} s", started.elapsed().as_secs_f64());
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    for name in &args.weights {
        let manifest = load_weights(&options.manifests, name)?;
        println!(
            "{}: {}\n  licence: {}",
            manifest.name, manifest.title, manifest.licence
        );
        match fetch_sources(
            &manifest.name,
            &manifest.sources,
            &options,
            &agent,
            &mut outcomes,
        ) {
            Ok(f) => lines.push(format!("{name}: {}", f.files[0].display())),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    print_table(&outcomes);
    for line in &lines {
        println!("{line}");
    }
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("error: {f}");
        }
        bail!(
            "{} of {} fetches failed",
            failures.len(),
            names.len() + args.weights.len()
        );
    }
    Ok(())
}

/// The datasets asked for (`all` expanded; none when only weights are) and where to fetch them from:
/// the `--mirror`s, then `FEWSHOT_MIRROR`'s, each folder checked to exist.
fn plan(args: &FetchDataArgs) -> Result<(Vec<String>, FetchOptions)> {
    let names: Vec<String> = if !args.weights.is_empty() && args.dataset == ["all"] {
        Vec::new()
    } else if args.dataset.iter().any(|d| d == "all") {
        DATASETS.iter().map(|s| s.to_string()).collect()
    } else {
        args.dataset.clone()
    };
    let mut mirrors: Vec<Mirror> = args.mirror.iter().map(|m| Mirror::parse(m)).collect();
    if let Ok(env) = std::env::var("FEWSHOT_MIRROR") {
        mirrors.extend(Mirror::parse_list(&env));
    }
    for m in &mirrors {
        if let Mirror::Dir(d) = m {
            if !d.is_dir() {
                bail!(
                    "mirror {} is not a folder; pass an existing folder or an http(s) URL",
                    d.display()
                );
            }
        }
    }
    let options = FetchOptions {
        data_dir: repo::data_dir(args.data_dir.clone()),
        manifests: repo::manifests(),
        mirrors,
        verify_only: args.verify_only,
    };
    Ok((names, options))
}

/// What `fetch-data` prints for a dataset that is ready: its source, stores and episode files.
fn ready_lines(
    name: &str,
    manifest: &fewshot::manifest::DatasetManifest,
    ready: &DatasetReady,
) -> Vec<String> {
    let mut lines = Vec::new();
    let p = &ready.prepared;
    let images: usize = p
        .stores
        .iter()
        .filter(|s| s.size == manifest.store.size)
        .map(|s| s.images)
        .sum();
    let how = if ready.prepare_skipped {
        "already prepared".to_string()
    } else {
        format!("prepared in {:.1} s", p.seconds)
    };
    lines.push(format!(
        "{name}: {images} images from source {} ({how}) in {}",
        p.source,
        ready.store_dir.display()
    ));
    for s in &p.stores {
        lines.push(format!(
            "  {:<16} {:>4} classes {:>7} images  fingerprint {}",
            s.file, s.classes, s.images, s.fingerprint
        ));
    }
    for (path, status) in &ready.episodes {
        let shown = path
            .strip_prefix(repo::root())
            .unwrap_or(path)
            .display()
            .to_string();
        match status {
            EpisodeFileStatus::Written => {
                lines.push(format!("  episodes written  {shown} (commit it)"))
            }
            EpisodeFileStatus::Checked => lines.push(format!("  episodes checked  {shown}")),
            EpisodeFileStatus::Refused(why) => {
                lines.push(format!("  episodes REFUSED  {shown}: {why}"))
            }
        }
    }
    lines
}

/// `--verify-only`: re-hash the archives and recompute every store's fingerprint.
fn verify_dataset(
    manifest: &fewshot::manifest::DatasetManifest,
    options: &FetchOptions,
    split: Option<&str>,
    agent: &HttpAgent,
    outcomes: &mut Vec<ArchiveOutcome>,
) -> Result<String> {
    fetch_dataset(manifest, options, agent, outcomes)?;
    let stores = verify_stores(manifest, &options.data_dir, split)?;
    Ok(format!(
        "{}: {} stores verified ({})",
        manifest.name,
        stores.len(),
        stores.join(", ")
    ))
}

fn print_table(outcomes: &[ArchiveOutcome]) {
    if outcomes.is_empty() {
        return;
    }
    println!(
        "\n{:<16} {:<22} {:<42} {:>10}  status",
        "dataset", "source", "file", "MB"
    );
    for o in outcomes {
        let status = match &o.status {
            ArchiveStatus::Fetched { from, seconds } => {
                let rate = o.size as f64 / 1e6 / seconds.max(1e-9);
                format!("fetched from {from} ({seconds:.1} s, {rate:.0} MB/s)")
            }
            ArchiveStatus::AlreadyVerified => "skipped: verified earlier".into(),
            ArchiveStatus::Reverified { seconds } => {
                let rate = o.size as f64 / 1e6 / seconds.max(1e-9);
                format!("verified ({seconds:.1} s, {rate:.0} MB/s)")
            }
            ArchiveStatus::Missing => "missing".into(),
        };
        let pinned = if o.pinned { " [sha256 pinned]" } else { "" };
        println!(
            "{:<16} {:<22} {:<42} {:>10.1}  {status}{pinned}",
            o.dataset,
            o.source,
            o.file,
            o.size as f64 / 1e6
        );
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproduce_asks_for_weights_alone_or_for_its_datasets_alone() {
        let (names, _) = plan(&FetchDataArgs::weights(
            vec!["resnet18-imagenet".into()],
            None,
        ))
        .unwrap();
        assert!(names.is_empty(), "weights only: no dataset, not `all`");
        let (names, _) =
            plan(&FetchDataArgs::datasets(vec!["mini-imagenet".into()], None)).unwrap();
        assert_eq!(names, ["mini-imagenet"]);
    }
}
