//! The `fewshot` binary: thin CLI over the library. Subcommands inspect stores and episode files;
//! training and evaluation join them with the learning core.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
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
    /// Export a frozen episode file as plain CSV (episode,label,class,role,file) for other codebases.
    ExportEpisodes {
        /// A `manifests/episodes/<dataset>/*.episodes.json.gz` file.
        episodes: PathBuf,
        /// Output CSV path (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() {
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
        Command::StoreInfo { store } => {
            let store = Store::open(&store)?;
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
