//! Frozen episode files: the test (2,000) and validation (200) episodes every method is scored on,
//! written once, committed under `manifests/episodes/<dataset>/`, and read by every run.
//!
//! A file is gzipped JSON: the dataset, split, spec, seed, the fingerprint of the store the episodes
//! were drawn from, the names they use, the episodes as indices into those names, and a SHA-256 of all
//! of that (`content_sha256`), checked on every read. Images are named by (class, file name), so a
//! store prepared from another distribution of the dataset is scored on the same episodes when it has
//! every named image, and refused, with the missing names, when it does not.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::episodes::{Episode, EpisodeClass, EpisodeSampler, EpisodeSpec, SplitIndex};
use super::philox::CounterRng;
use super::store::Store;
use crate::atomic_write::write_atomically;
use crate::error::{Error, Result};

pub const FORMAT: &str = "fewshot-episodes-v1";
/// Default seeds of the frozen files.
pub const TEST_SEED: u64 = 1;
pub const VAL_SEED: u64 = 2;
/// Default numbers of frozen episodes (METHOD.md §6).
pub const TEST_EPISODES: usize = 2000;
pub const VAL_EPISODES: usize = 200;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FrozenEpisodes {
    pub format: String,
    pub dataset: String,
    pub split: String,
    pub split_variant: String,
    pub spec: EpisodeSpec,
    pub seed: u64,
    pub count: usize,
    pub store_fingerprint: String,
    pub sampler: String,
    /// The classes and files the episodes use, sorted.
    pub names: Vec<NamedClass>,
    /// Per episode, per label: `[class index, support file indices…, query file indices…]`.
    pub episodes: Vec<Vec<Vec<u32>>>,
    /// SHA-256 of this JSON with `content_sha256` empty.
    pub content_sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NamedClass {
    pub class: String,
    pub files: Vec<String>,
}

/// An episode resolved to store slots; `support[label]`, `query[label]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotEpisode {
    pub index: u64,
    pub support: Vec<Vec<usize>>,
    pub query: Vec<Vec<usize>>,
}

/// `<split>-<spec>-seed<seed>-n<count>.episodes.json.gz`.
pub fn frozen_file_name(split: &str, spec: EpisodeSpec, seed: u64, count: usize) -> String {
    format!(
        "{split}-{}-seed{seed}-n{count}.episodes.json.gz",
        spec.tag()
    )
}

/// `manifests/episodes/<dataset>/` (or `…/<dataset>@<variant>/` for a non-default split variant).
pub fn frozen_dir(
    manifests: &Path,
    dataset: &str,
    variant: &str,
    default_variant: &str,
) -> PathBuf {
    let name = if variant == default_variant {
        dataset.to_string()
    } else {
        format!("{dataset}@{variant}")
    };
    manifests.join("episodes").join(name)
}

impl FrozenEpisodes {
    /// Draws `count` episodes from `store`'s names.
    pub fn draw(store: &Store, spec: EpisodeSpec, seed: u64, count: usize) -> Result<Self> {
        let h = &store.header;
        let index = SplitIndex::from_header(h);
        let sampler = EpisodeSampler::new(&h.dataset, &h.split, spec, seed, &index)?;
        let episodes: Vec<Episode> = (0..count as u64)
            .into_par_iter()
            .map(|i| sampler.episode(i))
            .collect();
        let mut used: BTreeMap<&str, BTreeMap<&str, ()>> = BTreeMap::new();
        for e in &episodes {
            for c in &e.classes {
                let files = used.entry(&c.class).or_default();
                for f in c.support.iter().chain(&c.query) {
                    files.insert(f, ());
                }
            }
        }
        let names: Vec<NamedClass> = used
            .iter()
            .map(|(c, files)| NamedClass {
                class: c.to_string(),
                files: files.keys().map(|f| f.to_string()).collect(),
            })
            .collect();
        let class_ix: BTreeMap<&str, (u32, BTreeMap<&str, u32>)> = names
            .iter()
            .enumerate()
            .map(|(ci, n)| {
                let files = n
                    .files
                    .iter()
                    .enumerate()
                    .map(|(fi, f)| (f.as_str(), fi as u32))
                    .collect();
                (n.class.as_str(), (ci as u32, files))
            })
            .collect();
        let encoded = episodes
            .iter()
            .map(|e| {
                e.classes
                    .iter()
                    .map(|c| {
                        let (ci, files) = &class_ix[c.class.as_str()];
                        std::iter::once(*ci)
                            .chain(c.support.iter().chain(&c.query).map(|f| files[f.as_str()]))
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let mut frozen = FrozenEpisodes {
            format: FORMAT.into(),
            dataset: h.dataset.clone(),
            split: h.split.clone(),
            split_variant: h.split_variant.clone(),
            spec,
            seed,
            count,
            store_fingerprint: h.fingerprint.clone(),
            sampler: "philox4x32-10 per episode; see src/data/episodes.rs".into(),
            names,
            episodes: encoded,
            content_sha256: String::new(),
        };
        frozen.content_sha256 = frozen.compute_hash();
        Ok(frozen)
    }

    fn compute_hash(&self) -> String {
        let mut copy = self.clone();
        copy.content_sha256 = String::new();
        hex::encode(Sha256::digest(
            serde_json::to_vec(&copy).expect("plain struct"),
        ))
    }

    /// The episodes as names.
    pub fn episodes(&self) -> Vec<Episode> {
        let s = self.spec.n_shot;
        self.episodes
            .iter()
            .enumerate()
            .map(|(i, e)| Episode {
                index: i as u64,
                classes: e
                    .iter()
                    .map(|row| {
                        let named = &self.names[row[0] as usize];
                        let file = |k: &u32| named.files[*k as usize].clone();
                        EpisodeClass {
                            class: named.class.clone(),
                            support: row[1..1 + s].iter().map(file).collect(),
                            query: row[1 + s..].iter().map(file).collect(),
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    /// Writes the file (gzip, deterministic bytes) atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec(self).expect("plain struct");
        let mut gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::best());
        gz.write_all(&json).map_err(|e| Error::io(path, e))?;
        let bytes = gz.finish().map_err(|e| Error::io(path, e))?;
        write_atomically(path, &bytes)
    }

    /// Reads a file and checks its structure and content hash.
    pub fn read(path: &Path) -> Result<Self> {
        let bad = |message: String| Error::Episodes {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut json)
            .map_err(|e| bad(format!("not a gzip file: {e}")))?;
        let frozen: FrozenEpisodes =
            serde_json::from_slice(&json).map_err(|e| bad(format!("unreadable: {e}")))?;
        if frozen.format != FORMAT {
            return Err(bad(format!(
                "format {:?}, expected {FORMAT}",
                frozen.format
            )));
        }
        let actual = frozen.compute_hash();
        if actual != frozen.content_sha256 {
            return Err(bad(format!(
                "content hash mismatch: the file says {}, its content hashes to {actual}; the file was edited or corrupted, restore it from git",
                frozen.content_sha256
            )));
        }
        let per = 1 + frozen.spec.n_shot + frozen.spec.n_query;
        let valid = frozen.episodes.len() == frozen.count
            && frozen.episodes.iter().all(|e| {
                e.len() == frozen.spec.n_way
                    && e.iter().all(|row| {
                        row.len() == per
                            && frozen.names.get(row[0] as usize).is_some_and(|n| {
                                row[1..].iter().all(|&f| (f as usize) < n.files.len())
                            })
                    })
            });
        if !valid {
            return Err(bad(
                "episodes do not match the declared spec and names".into()
            ));
        }
        Ok(frozen)
    }

    /// Maps every named image to its slot in `store`. A store with another fingerprint is accepted
    /// when it has every named image (a warning says so), and refused otherwise.
    pub fn resolve(&self, store: &Store, path: &Path) -> Result<Vec<SlotEpisode>> {
        let h = &store.header;
        if h.dataset != self.dataset || h.split != self.split {
            return Err(Error::Episodes {
                path: path.to_path_buf(),
                message: format!(
                    "episodes of {}/{} cannot be used with the store of {}/{}",
                    self.dataset, self.split, h.dataset, h.split
                ),
            });
        }
        let mut missing = Vec::new();
        let slots: Vec<Vec<Option<usize>>> = self
            .names
            .iter()
            .map(|n| {
                n.files
                    .iter()
                    .map(|f| {
                        let slot = store.slot(&n.class, f);
                        if slot.is_none() {
                            missing.push(format!("{}/{f}", n.class));
                        }
                        slot
                    })
                    .collect()
            })
            .collect();
        if !missing.is_empty() {
            return Err(Error::Episodes {
                path: path.to_path_buf(),
                message: format!(
                    "the store {} (fingerprint {}, from source {}) lacks {} of the images these episodes name (drawn from a store with fingerprint {}), e.g. {}; prepare the dataset from a distribution with the same file names, or draw new episodes",
                    store.path.display(),
                    h.fingerprint,
                    h.source,
                    missing.len(),
                    self.store_fingerprint,
                    missing.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        if h.fingerprint != self.store_fingerprint {
            tracing::warn!(
                "{}: the store's fingerprint {} differs from the one the episodes were drawn from ({}); every named image exists, so the same episodes are used, but the pixels may differ (source {})",
                path.display(),
                h.fingerprint,
                self.store_fingerprint,
                h.source
            );
        }
        let s = self.spec.n_shot;
        Ok(self
            .episodes
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let slot = |row: &Vec<u32>, range: std::ops::Range<usize>| -> Vec<usize> {
                    row[range]
                        .iter()
                        .map(|&f| slots[row[0] as usize][f as usize].expect("checked"))
                        .collect()
                };
                SlotEpisode {
                    index: i as u64,
                    support: e.iter().map(|row| slot(row, 1..1 + s)).collect(),
                    query: e.iter().map(|row| slot(row, 1 + s..row.len())).collect(),
                }
            })
            .collect())
    }

    /// Plain CSV for other codebases: `episode,label,class,role,file`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("episode,label,class,role,file\n");
        for e in self.episodes() {
            for (label, c) in e.classes.iter().enumerate() {
                for (role, files) in [("support", &c.support), ("query", &c.query)] {
                    for f in files {
                        out.push_str(&format!("{},{label},{},{role},{f}\n", e.index, c.class));
                    }
                }
            }
        }
        out
    }
}

/// The `shuffle-support-labels` sabotage (`crate::sabotage`): the episode's support slots permuted across its classes
/// (seeded by the episode index); a permutation that changes nothing is rotated by one.
pub fn shuffle_support(episode: &mut SlotEpisode) {
    let shots: Vec<usize> = episode.support.iter().map(Vec::len).collect();
    let mut slots: Vec<_> = episode.support.iter().flatten().copied().collect();
    let original = slots.clone();
    let mut rng = CounterRng::new(
        CounterRng::key_from("sabotage/shuffle-support"),
        episode.index,
    );
    for i in (1..slots.len()).rev() {
        let j = rng.below(i as u32 + 1) as usize;
        slots.swap(i, j);
    }
    if slots == original {
        slots.rotate_left(1);
    }
    let mut rest = slots.as_slice();
    for (class, &n) in episode.support.iter_mut().zip(&shots) {
        class.copy_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffling_moves_support_images_between_classes_deterministically() {
        let episode = SlotEpisode {
            index: 7,
            support: vec![vec![0], vec![1], vec![2], vec![3], vec![4]],
            query: vec![vec![10]; 5],
        };
        let (mut a, mut b) = (episode.clone(), episode.clone());
        shuffle_support(&mut a);
        shuffle_support(&mut b);
        assert_eq!(a, b);
        assert_ne!(a.support, episode.support);
        let mut all: Vec<_> = a.support.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3, 4]);
        assert_eq!(a.query, episode.query);
    }
}
