//! Manifests: the TOML files under `manifests/` that declare datasets, pinned hashes and (later)
//! experiments. Plain Rust and serde, so `xtask` can resolve and hash them without linking candle.

pub mod baseline;
pub mod cell;
pub mod dataset;
pub mod experiment;
pub mod key_map;
pub mod lock;
pub mod model;
pub mod references;
pub mod weights;

use std::path::{Path, PathBuf};

pub use dataset::{Archive, DatasetManifest, Format, Source, SplitLists, StoreSpec};
pub use lock::{LockFile, LockedArchive};

use crate::error::{Error, Result};

/// Reads and parses one TOML manifest; a read error or a parse error names the file.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_toml(&text, path)
}

/// Parses TOML text read from `path` (named in the error).
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T> {
    toml::from_str(text).map_err(|e| Error::Manifest {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The datasets the suite knows, in the order `--dataset all` fetches them.
pub const DATASETS: [&str; 5] = [
    "mini-imagenet",
    "tiered-imagenet",
    "cub-200-2011",
    "cifar-fs",
    "omniglot",
];

/// Path of a dataset's manifest inside the manifests folder.
pub fn dataset_manifest_path(manifests: &Path, name: &str) -> PathBuf {
    manifests.join("datasets").join(format!("{name}.toml"))
}

/// Reads and validates `manifests/datasets/<name>.toml`.
pub fn load_dataset(manifests: &Path, name: &str) -> Result<DatasetManifest> {
    let path = dataset_manifest_path(manifests, name);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Manifest {
                path: path.clone(),
                message: format!(
                    "no such dataset manifest; known datasets: {}",
                    DATASETS.join(", ")
                ),
            }
        } else {
            Error::io(&path, e)
        }
    })?;
    parse_dataset(&text, &path)
}

/// Parses and validates a dataset manifest's text; `path` is only used in error messages.
pub fn parse_dataset(text: &str, path: &Path) -> Result<DatasetManifest> {
    let manifest: DatasetManifest = parse_toml(text, path)?;
    manifest.validate().map_err(|message| Error::Manifest {
        path: path.to_path_buf(),
        message,
    })?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if stem != manifest.name && path.extension().is_some_and(|e| e == "toml") {
        return Err(Error::Manifest {
            path: path.to_path_buf(),
            message: format!("name {:?} differs from the file name", manifest.name),
        });
    }
    Ok(manifest)
}

/// `<data_dir>/<name>/downloads`.
pub fn downloads_dir(data_dir: &Path, dataset: &str) -> PathBuf {
    data_dir.join(dataset).join("downloads")
}
