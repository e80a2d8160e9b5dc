//! Prepare: turn a fetched source's archives into one store per split. Each format has a converter
//! that yields [`RawImage`]s; this module assigns them to splits by the manifest's class lists,
//! decodes them in parallel batches (rayon), writes the stores, and checks class and image counts.
//! A `prepared.json` marker makes a second run a no-op when nothing changed.

mod cifar100_binary;
mod class_folders;
mod cub_tgz;
mod images_csv;
mod omniglot_zips;
mod ren_pickles;
mod tiered_png_pickles;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::raw_image::RawImage;
use super::store::{StoreMeta, StoreWriter};
use crate::atomic_write::write_atomically;
use crate::error::{Error, Result};
use crate::fetch::FetchedSource;
use crate::manifest::{DatasetManifest, Format};
use crate::progress::count_bar;

/// Bumped whenever a converter's output changes, so old stores are re-prepared.
/// 2 (2026-12-04, #27): JPEGs decoded as Pillow decodes them (libjpeg-turbo) and every resize Pillow's
/// BILINEAR bit for bit; was `image` 0.25.9 (zune-jpeg) and its triangle filter.
pub const PREPARE_VERSION: u32 = 2;

/// The image decoders, as recorded in every store (versions checked against Cargo.lock by a test).
pub const DECODER: &str = "turbojpeg-sys 1.2.0 = libjpeg-turbo 3.1.0 (JPEG, Pillow's settings: ISLOW IDCT, fancy upsampling); image 0.25.9 (PNG); Pillow-exact BILINEAR resize";

const BATCH: usize = 1024;

/// `datasets/<name>/` for the default split variant, `datasets/<name>/split-<variant>/` otherwise.
pub fn store_dir(data_dir: &Path, manifest: &DatasetManifest, variant: &str) -> PathBuf {
    let base = data_dir.join(&manifest.name);
    if variant == manifest.default_split {
        base
    } else {
        base.join(format!("split-{variant}"))
    }
}

/// `<split>.store` at the main size, `<split>@<size>.store` for extra sizes.
pub fn store_file_name(manifest: &DatasetManifest, split: &str, size: u32) -> String {
    if size == manifest.store.size {
        format!("{split}.store")
    } else {
        format!("{split}@{size}.store")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PreparedStore {
    pub split: String,
    pub size: u32,
    pub file: String,
    pub bytes: u64,
    pub classes: usize,
    pub images: usize,
    pub fingerprint: String,
}

/// The `prepared.json` marker: what was prepared from what.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Prepared {
    pub prepare_version: u32,
    pub dataset: String,
    pub split_variant: String,
    pub source: String,
    pub source_sha256: Vec<String>,
    pub decoder: String,
    pub stores: Vec<PreparedStore>,
    pub seconds: f64,
}

impl Prepared {
    pub fn marker_path(dir: &Path) -> PathBuf {
        dir.join("prepared.json")
    }

    /// The marker in `dir`, if it matches `source` and every store it lists is still there.
    pub fn current(dir: &Path, variant: &str, fetched: &FetchedSource) -> Option<Prepared> {
        let marker: Prepared =
            serde_json::from_slice(&std::fs::read(Self::marker_path(dir)).ok()?).ok()?;
        let fresh = marker.prepare_version == PREPARE_VERSION
            && marker.split_variant == variant
            && marker.source == fetched.source.id
            && marker.source_sha256 == fetched.sha256
            && marker
                .stores
                .iter()
                .all(|s| std::fs::metadata(dir.join(&s.file)).is_ok_and(|m| m.len() == s.bytes));
        fresh.then_some(marker)
    }
}

/// Prepares the stores of `manifest` from `fetched` under `data_dir`; returns the marker and whether
/// the work was skipped because the stores were already current.
pub fn prepare_dataset(
    manifest: &DatasetManifest,
    fetched: &FetchedSource,
    data_dir: &Path,
    variant: Option<&str>,
) -> Result<(Prepared, bool)> {
    let (variant, lists) = manifest.split_lists(variant).map_err(Error::invalid)?;
    let dir = store_dir(data_dir, manifest, variant);
    if let Some(marker) = Prepared::current(&dir, variant, fetched) {
        return Ok((marker, true));
    }
    let started = Instant::now();
    let sizes = pipeline_sizes(manifest);
    let splits: Vec<(&str, &Vec<String>)> = lists.iter().to_vec();
    let split_of: HashMap<&str, usize> = splits
        .iter()
        .enumerate()
        .flat_map(|(i, (_, classes))| classes.iter().map(move |c| (c.as_str(), i)))
        .collect();
    let expected_total: usize = lists.images.as_ref().map(|m| m.values().sum()).unwrap_or(0);
    let mut pipeline = Pipeline {
        writers: open_writers(manifest, fetched, &dir, variant, &splits, &sizes)?,
        split_of,
        sizes: sizes.clone(),
        channels: manifest.store.channels,
        batch: Vec::with_capacity(BATCH),
        per_key: HashMap::new(),
        unknown: BTreeSet::new(),
        bar: count_bar(
            &format!("{}: decoding", manifest.name),
            expected_total as u64,
        ),
    };
    convert_source(manifest, fetched, &mut |raw: RawImage| pipeline.push(raw))?;
    pipeline.flush()?;
    pipeline.bar.finish_and_clear();
    let Pipeline {
        writers,
        per_key,
        unknown,
        ..
    } = pipeline;
    let where_ = fetched.files.first().cloned().unwrap_or_default();
    if !unknown.is_empty() {
        return Err(Error::Archive {
            path: where_,
            message: format!(
                "{} classes are in none of the manifest's {variant} split lists: {}",
                unknown.len(),
                unknown
                    .iter()
                    .take(10)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    check_counts(
        manifest,
        variant,
        &splits,
        &per_key,
        lists.images.as_ref(),
        &where_,
    )?;
    let stores = finish_stores(manifest, &dir, &splits, writers, &sizes)?;
    let marker = Prepared {
        prepare_version: PREPARE_VERSION,
        dataset: manifest.name.clone(),
        split_variant: variant.to_string(),
        source: fetched.source.id.clone(),
        source_sha256: fetched.sha256.clone(),
        decoder: DECODER.to_string(),
        stores,
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    };
    write_atomically(
        &Prepared::marker_path(&dir),
        &serde_json::to_vec_pretty(&marker).expect("plain struct"),
    )?;
    Ok((marker, false))
}

/// One store writer per split and size, each with the metadata that says what it will hold.
fn open_writers(
    manifest: &DatasetManifest,
    fetched: &FetchedSource,
    dir: &Path,
    variant: &str,
    splits: &[(&str, &Vec<String>)],
    sizes: &[u32],
) -> Result<Vec<Vec<StoreWriter>>> {
    let crop = matches!(fetched.source.format, Format::CubTgz { bbox_crop: true });
    let transform = format!(
        "{}stretch to size x size with Pillow's BILINEAR (Image.resize, antialiased, fixed point), {}",
        if crop { "crop to bounding box, " } else { "" },
        if manifest.store.channels == 1 {
            "greyscale"
        } else {
            "RGB"
        }
    );
    let mut writers = Vec::new();
    for (split, _) in splits {
        let mut per_size = Vec::new();
        for &size in sizes {
            let meta = StoreMeta {
                dataset: manifest.name.clone(),
                split: split.to_string(),
                split_variant: variant.to_string(),
                source: fetched.source.id.clone(),
                source_sha256: fetched.sha256.clone(),
                size,
                channels: manifest.store.channels,
                decoder: DECODER.to_string(),
                transform: transform.replace("size x size", &format!("{size}x{size}")),
                normalization_mean: manifest.normalization.mean.clone(),
                normalization_std: manifest.normalization.std.clone(),
                normalization_source: manifest.normalization.source.clone(),
            };
            per_size.push(StoreWriter::create(
                &dir.join(store_file_name(manifest, split, size)),
                meta,
            )?);
        }
        writers.push(per_size);
    }
    Ok(writers)
}

/// Every image of the fetched files, decoded by the converter of the source's format, into `emit`.
fn convert_source(
    manifest: &DatasetManifest,
    fetched: &FetchedSource,
    emit: &mut dyn FnMut(RawImage) -> Result<()>,
) -> Result<()> {
    let files = &fetched.files;
    match &fetched.source.format {
        Format::ClassFolders { split_dirs } => class_folders::convert(files, split_dirs, emit),
        Format::ImagesCsv { csv } => images_csv::convert(files, csv, emit),
        Format::RenPickles {
            files: pickles,
            csv,
        } => ren_pickles::convert(files, pickles, csv, emit),
        Format::TieredPngPickles { images, labels } => {
            tiered_png_pickles::convert(files, images, labels, emit)
        }
        Format::CubTgz { bbox_crop } => cub_tgz::convert(files, *bbox_crop, emit),
        Format::Cifar100Binary {} => cifar100_binary::convert(files, emit),
        Format::OmniglotZips {} => omniglot_zips::convert(files, emit),
        Format::TorchCheckpoint {} => Err(Error::invalid(format!(
            "{}: a torch checkpoint is weights, not a dataset",
            manifest.name
        ))),
    }
}

/// Finishes every store (header, fingerprint) and lists it for the marker.
fn finish_stores(
    manifest: &DatasetManifest,
    dir: &Path,
    splits: &[(&str, &Vec<String>)],
    writers: Vec<Vec<StoreWriter>>,
    sizes: &[u32],
) -> Result<Vec<PreparedStore>> {
    let mut stores = Vec::new();
    for ((split, _), per_size) in splits.iter().zip(writers) {
        for (writer, &size) in per_size.into_iter().zip(sizes) {
            let header = writer.finish()?;
            let file = store_file_name(manifest, split, size);
            stores.push(PreparedStore {
                split: split.to_string(),
                size,
                bytes: std::fs::metadata(dir.join(&file))
                    .map_err(|e| Error::io(dir.join(&file), e))?
                    .len(),
                file,
                classes: header.classes.len(),
                images: header.count,
                fingerprint: header.fingerprint,
            });
        }
    }
    Ok(stores)
}

fn pipeline_sizes(manifest: &DatasetManifest) -> Vec<u32> {
    let mut sizes = vec![manifest.store.size];
    sizes.extend(
        manifest
            .store
            .extra_sizes
            .iter()
            .copied()
            .filter(|s| *s != manifest.store.size),
    );
    sizes
}

fn check_counts(
    manifest: &DatasetManifest,
    variant: &str,
    splits: &[(&str, &Vec<String>)],
    per_key: &HashMap<String, usize>,
    totals: Option<&BTreeMap<String, usize>>,
    archive: &Path,
) -> Result<()> {
    let fail = |message: String| {
        Err(Error::Archive {
            path: archive.to_path_buf(),
            message,
        })
    };
    for (split, classes) in splits {
        let missing: Vec<&String> = classes
            .iter()
            .filter(|c| !per_key.contains_key(c.as_str()))
            .collect();
        if !missing.is_empty() {
            return fail(format!(
                "{} of the {} {split} classes of split {variant} have no image: {}",
                missing.len(),
                classes.len(),
                missing
                    .iter()
                    .take(10)
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(n) = manifest.images_per_class {
            if let Some(c) = classes.iter().find(|c| per_key[c.as_str()] != n) {
                return fail(format!(
                    "class {c} has {} images, the manifest says {n}",
                    per_key[c.as_str()]
                ));
            }
        }
        let total: usize = classes.iter().map(|c| per_key[c.as_str()]).sum();
        if let Some(expected) = totals.and_then(|t| t.get(*split)) {
            if total != *expected {
                return fail(format!(
                    "split {split} has {total} images, the manifest says {expected}"
                ));
            }
        }
    }
    Ok(())
}

struct Pipeline<'a> {
    writers: Vec<Vec<StoreWriter>>,
    split_of: HashMap<&'a str, usize>,
    sizes: Vec<u32>,
    channels: u8,
    batch: Vec<RawImage>,
    per_key: HashMap<String, usize>,
    unknown: BTreeSet<String>,
    bar: indicatif::ProgressBar,
}

impl Pipeline<'_> {
    fn push(&mut self, raw: RawImage) -> Result<()> {
        self.batch.push(raw);
        if self.batch.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        let decoded: Vec<Result<Vec<Vec<u8>>>> = batch
            .par_iter()
            .map(|raw| {
                if self.split_of.contains_key(raw.split_key.as_str()) {
                    raw.decode(self.channels, &self.sizes)
                } else {
                    Ok(Vec::new())
                }
            })
            .collect();
        for (raw, pixels) in batch.iter().zip(decoded) {
            let Some(&split) = self.split_of.get(raw.split_key.as_str()) else {
                self.unknown.insert(raw.split_key.clone());
                continue;
            };
            for (writer, px) in self.writers[split].iter_mut().zip(pixels?) {
                writer.push(&raw.class, &raw.file, &px, &raw.origin)?;
            }
            *self.per_key.entry(raw.split_key.clone()).or_default() += 1;
        }
        self.bar.inc(batch.len() as u64);
        self.batch = batch;
        self.batch.clear();
        Ok(())
    }
}

/// Whether a member name is an image file the converters read.
pub(crate) fn is_image_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".jpg") || lower.ends_with(".jpeg") || lower.ends_with(".png")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_recorded_decoder_version_is_the_locked_one() {
        let lock = include_str!("../../../Cargo.lock");
        for name in ["turbojpeg-sys", "image"] {
            let at = super::DECODER.find(&format!("{name} ")).unwrap() + name.len() + 1;
            let version = super::DECODER[at..].split(' ').next().unwrap();
            assert!(
                lock.contains(&format!("name = \"{name}\"\nversion = \"{version}\"")),
                "{name} {version}"
            );
        }
        assert!(super::DECODER.contains(crate::data::jpeg_pillow::LIBJPEG_TURBO_VERSION));
    }
}
