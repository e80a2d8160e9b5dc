//! One dataset from manifest to usable data: fetch the archives, prepare the stores, and make sure the
//! frozen validation and test episodes exist (drawing and writing them the first time) and apply to
//! the stores. This is what `cargo xtask fetch-data` runs per dataset.

use std::path::{Path, PathBuf};

use super::episodes::EpisodeSpec;
use super::frozen_episodes::{
    frozen_dir, frozen_file_name, FrozenEpisodes, TEST_EPISODES, TEST_SEED, VAL_EPISODES, VAL_SEED,
};
use super::prepare::{prepare_dataset, store_dir, store_file_name, Prepared};
use super::store::Store;
use crate::error::{Error, Result};
use crate::fetch::{fetch_dataset, ArchiveOutcome, FetchOptions};
use crate::manifest::DatasetManifest;

/// The protocol's frozen episode sets: (split, spec, seed, count).
pub fn protocol_episode_sets() -> Vec<(&'static str, EpisodeSpec, u64, usize)> {
    let mut sets = Vec::new();
    for (split, seed, count) in [
        ("val", VAL_SEED, VAL_EPISODES),
        ("test", TEST_SEED, TEST_EPISODES),
    ] {
        for shot in [1, 5] {
            let spec = EpisodeSpec {
                n_way: 5,
                n_shot: shot,
                n_query: 15,
            };
            sets.push((split, spec, seed, count));
        }
    }
    sets
}

/// What happened to one frozen episode file.
#[derive(Debug, Clone, PartialEq)]
pub enum EpisodeFileStatus {
    Written,
    Checked,
    /// It exists but does not apply to this store; the reason.
    Refused(String),
}

#[derive(Debug, Clone)]
pub struct DatasetReady {
    pub prepared: Prepared,
    pub prepare_skipped: bool,
    pub store_dir: PathBuf,
    pub episodes: Vec<(PathBuf, EpisodeFileStatus)>,
}

/// Fetches, prepares and freezes episodes for one dataset.
pub fn set_up_dataset(
    manifest: &DatasetManifest,
    options: &FetchOptions,
    variant: Option<&str>,
    agent: &ureq::Agent,
    outcomes: &mut Vec<ArchiveOutcome>,
) -> Result<DatasetReady> {
    let fetched = fetch_dataset(manifest, options, agent, outcomes)?;
    let (prepared, prepare_skipped) =
        prepare_dataset(manifest, &fetched, &options.data_dir, variant)?;
    let dir = store_dir(&options.data_dir, manifest, &prepared.split_variant);
    let episodes =
        ensure_frozen_episodes(manifest, &options.manifests, &dir, &prepared.split_variant)?;
    Ok(DatasetReady {
        prepared,
        prepare_skipped,
        store_dir: dir,
        episodes,
    })
}

/// Writes the protocol's frozen episode files that are missing and checks the others against the
/// stores in `store_dir`.
pub fn ensure_frozen_episodes(
    manifest: &DatasetManifest,
    manifests: &Path,
    store_dir: &Path,
    variant: &str,
) -> Result<Vec<(PathBuf, EpisodeFileStatus)>> {
    let dir = frozen_dir(manifests, &manifest.name, variant, &manifest.default_split);
    let mut results = Vec::new();
    for (split, spec, seed, count) in protocol_episode_sets() {
        let store_path = store_dir.join(store_file_name(manifest, split, manifest.store.size));
        let store = Store::open(&store_path)?;
        let path = dir.join(frozen_file_name(split, spec, seed, count));
        let status = if path.exists() {
            match FrozenEpisodes::read(&path).and_then(|f| f.resolve(&store, &path)) {
                Ok(_) => EpisodeFileStatus::Checked,
                Err(e) => EpisodeFileStatus::Refused(e.to_string()),
            }
        } else {
            FrozenEpisodes::draw(&store, spec, seed, count)?.write(&path)?;
            EpisodeFileStatus::Written
        };
        results.push((path, status));
    }
    Ok(results)
}

/// Recomputes the fingerprint of every store the dataset's `prepared.json` lists and compares it with
/// the recorded one; returns `file fingerprint-prefix` per store.
pub fn verify_stores(
    manifest: &DatasetManifest,
    data_dir: &Path,
    variant: Option<&str>,
) -> Result<Vec<String>> {
    let (variant, _) = manifest.split_lists(variant).map_err(Error::invalid)?;
    let dir = store_dir(data_dir, manifest, variant);
    let marker_path = Prepared::marker_path(&dir);
    let missing = |message: String| Error::Store {
        path: marker_path.clone(),
        dataset: manifest.name.clone(),
        message,
    };
    let bytes =
        std::fs::read(&marker_path).map_err(|_| missing("no prepared stores to verify".into()))?;
    let prepared: Prepared =
        serde_json::from_slice(&bytes).map_err(|e| missing(format!("unreadable: {e}")))?;
    let mut verified = Vec::new();
    for s in &prepared.stores {
        let store = Store::open(&dir.join(&s.file))?;
        let actual = store.recompute_fingerprint();
        if actual != s.fingerprint || actual != store.header.fingerprint {
            return Err(Error::Store {
                path: store.path.clone(),
                dataset: manifest.name.clone(),
                message: format!(
                    "its pixels hash to fingerprint {actual}, the recorded one is {}",
                    s.fingerprint
                ),
            });
        }
        verified.push(format!("{} {}", s.file, &actual[..12]));
    }
    Ok(verified)
}
