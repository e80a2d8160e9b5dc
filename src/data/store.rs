//! A store: one split of one dataset after `prepare`, in one file `<split>.store`.
//!
//! Layout: `FSSTORE1` | pixels of every image, u8 HWC, `height*width*channels` bytes each, in the
//! order they were written | header (JSON) | header length (u64 LE) | `FSSTORE1`. The header lists
//! the classes (sorted) with their files (sorted) and each file's slot in the pixel section, plus
//! metadata: distribution, decoder, per-channel mean and std, the protocol's normalisation constants.
//!
//! The fingerprint is SHA-256 over the canonical index (image shape, class and file names in sorted
//! order) followed by the SHA-256 of each image's pixels in that order. It does not depend on the
//! write order or thread count, so two stores with equal fingerprints hold the same pixels under the
//! same names, whichever distribution they were prepared from.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic_write::temporary_path;
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"FSSTORE1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreHeader {
    pub dataset: String,
    pub split: String,
    pub split_variant: String,
    /// The manifest source (distribution) the pixels came from, and its archives' SHA-256s.
    pub source: String,
    pub source_sha256: Vec<String>,
    pub height: u32,
    pub width: u32,
    pub channels: u8,
    pub count: usize,
    pub classes: Vec<StoreClass>,
    /// Decoder crate and version, and how images were resized/cropped.
    pub decoder: String,
    pub transform: String,
    /// Per-channel mean and std of the stored pixels on the 0–255 scale.
    pub pixel_mean: Vec<f64>,
    pub pixel_std: Vec<f64>,
    /// The protocol's normalisation constants (0–1 scale) and where they come from.
    pub normalization_mean: Vec<f32>,
    pub normalization_std: Vec<f32>,
    pub normalization_source: String,
    pub fingerprint: String,
    pub prepared_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreClass {
    pub name: String,
    pub files: Vec<String>,
    /// Slot of each file in the pixel section.
    pub slots: Vec<usize>,
}

/// What a writer needs to know besides the pixels.
#[derive(Debug, Clone)]
pub struct StoreMeta {
    pub dataset: String,
    pub split: String,
    pub split_variant: String,
    pub source: String,
    pub source_sha256: Vec<String>,
    pub size: u32,
    pub channels: u8,
    pub decoder: String,
    pub transform: String,
    pub normalization_mean: Vec<f32>,
    pub normalization_std: Vec<f32>,
    pub normalization_source: String,
}

/// Streams images into `<path>` (through a temporary file renamed at the end).
pub struct StoreWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    meta: StoreMeta,
    image_bytes: usize,
    slots: BTreeMap<String, BTreeMap<String, (usize, [u8; 32])>>,
    count: usize,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
}

impl StoreWriter {
    pub fn create(path: &Path, meta: StoreMeta) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let tmp = temporary_path(path);
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut out = BufWriter::with_capacity(1 << 22, file);
        out.write_all(MAGIC)
            .map_err(|e| Error::io_writing(&tmp, e, 8))?;
        let c = meta.channels as usize;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            out,
            image_bytes: (meta.size as usize).pow(2) * c,
            meta,
            slots: BTreeMap::new(),
            count: 0,
            sum: vec![0.0; c],
            sum_sq: vec![0.0; c],
        })
    }

    /// Appends one image; `pixels` are HWC u8 at the store's size.
    pub fn push(&mut self, class: &str, file: &str, pixels: &[u8], origin: &str) -> Result<()> {
        if pixels.len() != self.image_bytes {
            return Err(Error::Image {
                path: origin.to_string(),
                message: format!(
                    "{} bytes of pixels, expected {}",
                    pixels.len(),
                    self.image_bytes
                ),
            });
        }
        let digest: [u8; 32] = Sha256::digest(pixels).into();
        let files = self.slots.entry(class.to_string()).or_default();
        if files
            .insert(file.to_string(), (self.count, digest))
            .is_some()
        {
            return Err(Error::Image {
                path: origin.to_string(),
                message: format!("class {class} has two images named {file}"),
            });
        }
        self.out
            .write_all(pixels)
            .map_err(|e| Error::io_writing(&self.tmp, e, pixels.len() as u64))?;
        let c = self.sum.len();
        let mut sums = vec![0u64; c];
        let mut squares = vec![0u64; c];
        fewshot_cpu_loops::pixel_sums::add_channel_sums(pixels, &mut sums, &mut squares);
        for k in 0..c {
            self.sum[k] += sums[k] as f64;
            self.sum_sq[k] += squares[k] as f64;
        }
        self.count += 1;
        Ok(())
    }

    /// Class name → number of images written so far.
    pub fn class_counts(&self) -> BTreeMap<String, usize> {
        self.slots
            .iter()
            .map(|(k, v)| (k.clone(), v.len()))
            .collect()
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// Writes the header, renames the file into place and returns the header.
    pub fn finish(mut self) -> Result<StoreHeader> {
        let c = self.meta.channels as usize;
        let per_channel = (self.count as f64) * (self.meta.size as f64).powi(2);
        let mean: Vec<f64> = (0..c).map(|k| self.sum[k] / per_channel.max(1.0)).collect();
        let std: Vec<f64> = (0..c)
            .map(|k| {
                (self.sum_sq[k] / per_channel.max(1.0) - mean[k] * mean[k])
                    .max(0.0)
                    .sqrt()
            })
            .collect();
        let classes: Vec<StoreClass> = self
            .slots
            .iter()
            .map(|(name, files)| StoreClass {
                name: name.clone(),
                files: files.keys().cloned().collect(),
                slots: files.values().map(|(slot, _)| *slot).collect(),
            })
            .collect();
        let digests = self
            .slots
            .values()
            .flat_map(|files| files.values().map(|(_, d)| *d));
        let fingerprint = fingerprint(
            self.meta.size,
            self.meta.size,
            self.meta.channels,
            &classes,
            digests,
        );
        let m = &self.meta;
        let header = StoreHeader {
            dataset: m.dataset.clone(),
            split: m.split.clone(),
            split_variant: m.split_variant.clone(),
            source: m.source.clone(),
            source_sha256: m.source_sha256.clone(),
            height: m.size,
            width: m.size,
            channels: m.channels,
            count: self.count,
            classes,
            decoder: m.decoder.clone(),
            transform: m.transform.clone(),
            pixel_mean: mean.iter().map(|v| round4(*v)).collect(),
            pixel_std: std.iter().map(|v| round4(*v)).collect(),
            normalization_mean: m.normalization_mean.clone(),
            normalization_std: m.normalization_std.clone(),
            normalization_source: m.normalization_source.clone(),
            fingerprint,
            prepared_by: concat!("fewshot ", env!("CARGO_PKG_VERSION")).to_string(),
        };
        let json = serde_json::to_vec(&header).expect("plain struct");
        let tmp = self.tmp.clone();
        let io = |e| Error::io_writing(&tmp, e, json.len() as u64 + 16);
        self.out.write_all(&json).map_err(io)?;
        self.out
            .write_all(&(json.len() as u64).to_le_bytes())
            .map_err(io)?;
        self.out.write_all(MAGIC).map_err(io)?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(header)
    }
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// SHA-256 over the canonical index and the per-image pixel digests in index order.
fn fingerprint(
    height: u32,
    width: u32,
    channels: u8,
    classes: &[StoreClass],
    digests: impl Iterator<Item = [u8; 32]>,
) -> String {
    let mut h = Sha256::new();
    h.update(format!("fewshot-store-v1 {height}x{width}x{channels}\n").as_bytes());
    for class in classes {
        h.update(format!("class {} {}\n", class.name, class.files.len()).as_bytes());
        for file in &class.files {
            h.update(file.as_bytes());
            h.update(b"\n");
        }
    }
    for d in digests {
        h.update(d);
    }
    hex::encode(h.finalize())
}

/// A store opened for reading (memory-mapped).
pub struct Store {
    pub path: PathBuf,
    pub header: StoreHeader,
    /// A sabotage's fault in the pixels read through [`Store::image`] (none unless a sabotaged
    /// cell set one).
    pub pixel_fault: Option<crate::sabotage::PixelFault>,
    map: Mmap,
    image_bytes: usize,
    index: HashMap<String, (usize, HashMap<String, usize>)>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        let dataset = path
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bad = |message: String| Error::Store {
            path: path.to_path_buf(),
            dataset: dataset.clone(),
            message,
        };
        let file = File::open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                bad("no such store".into())
            } else {
                Error::io(path, e)
            }
        })?;
        // SAFETY: the store is written once and renamed into place; nothing modifies it in place.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let n = map.len();
        if n < 24 || &map[..8] != MAGIC || &map[n - 8..] != MAGIC {
            return Err(bad(
                "not a fewshot store (bad magic bytes): truncated or from another program".into(),
            ));
        }
        let header_len = u64::from_le_bytes(map[n - 16..n - 8].try_into().unwrap()) as usize;
        let header_start = (n - 16)
            .checked_sub(header_len)
            .ok_or_else(|| bad("header length exceeds the file".into()))?;
        let header: StoreHeader = serde_json::from_slice(&map[header_start..n - 16])
            .map_err(|e| bad(format!("unreadable header: {e}")))?;
        let image_bytes = (header.height * header.width) as usize * header.channels as usize;
        if header_start - 8 != image_bytes * header.count {
            return Err(bad(format!(
                "pixel section holds {} bytes, the header promises {} images of {image_bytes}",
                header_start - 8,
                header.count
            )));
        }
        let index = header
            .classes
            .iter()
            .enumerate()
            .map(|(ci, c)| {
                let files = c
                    .files
                    .iter()
                    .cloned()
                    .zip(c.slots.iter().copied())
                    .collect();
                (c.name.clone(), (ci, files))
            })
            .collect();
        Ok(Store {
            path: path.to_path_buf(),
            header,
            pixel_fault: None,
            map,
            image_bytes,
            index,
        })
    }

    /// Pixels of the image in `slot` (HWC u8).
    pub fn pixels(&self, slot: usize) -> &[u8] {
        let start = 8 + slot * self.image_bytes;
        &self.map[start..start + self.image_bytes]
    }

    /// The image in `slot` as the transforms take it.
    pub fn image(&self, slot: usize) -> crate::data::transforms::StoredImage<'_> {
        crate::data::transforms::StoredImage {
            pixels: self.pixels(slot),
            side: self.header.width,
            channels: self.header.channels,
            fault: self.pixel_fault,
        }
    }

    /// Slot of `file` in `class`, if the store has it.
    pub fn slot(&self, class: &str, file: &str) -> Option<usize> {
        self.index.get(class)?.1.get(file).copied()
    }

    pub fn class(&self, name: &str) -> Option<&StoreClass> {
        self.index.get(name).map(|(i, _)| &self.header.classes[*i])
    }

    /// Recomputes the fingerprint from the pixels (for `--verify-only`).
    pub fn recompute_fingerprint(&self) -> String {
        let digests: Vec<[u8; 32]> = self
            .header
            .classes
            .iter()
            .flat_map(|c| {
                c.slots
                    .iter()
                    .map(|&s| Sha256::digest(self.pixels(s)).into())
            })
            .collect();
        let h = &self.header;
        fingerprint(
            h.height,
            h.width,
            h.channels,
            &h.classes,
            digests.into_iter(),
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A toy grey store's metadata (2×2 images), for this module's tests and `store_subset`'s.
    pub(crate) fn meta() -> StoreMeta {
        StoreMeta {
            dataset: "toy".into(),
            split: "train".into(),
            split_variant: "default".into(),
            source: "src".into(),
            source_sha256: vec![],
            size: 2,
            channels: 1,
            decoder: "none".into(),
            transform: "none".into(),
            normalization_mean: vec![0.5],
            normalization_std: vec![0.25],
            normalization_source: "test".into(),
        }
    }

    fn write(dir: &Path, order: &[(&str, &str, u8)]) -> StoreHeader {
        let mut w = StoreWriter::create(&dir.join("train.store"), meta()).unwrap();
        for (class, file, v) in order {
            w.push(class, file, &[*v; 4], "test").unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn round_trip_stats_and_order_independent_fingerprint() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let items = [("b", "2.png", 10u8), ("a", "1.png", 20), ("b", "1.png", 30)];
        let ha = write(a.path(), &items);
        let reversed: Vec<_> = items.iter().rev().cloned().collect();
        let hb = write(b.path(), &reversed);
        assert_eq!(ha.fingerprint, hb.fingerprint);
        assert_eq!(ha.pixel_mean, vec![20.0]);
        // population std of {10, 20, 30} (each repeated 4 times) = sqrt(200/3)
        assert!((ha.pixel_std[0] - (200.0f64 / 3.0).sqrt()).abs() < 1e-3);
        let store = Store::open(&a.path().join("train.store")).unwrap();
        assert_eq!(store.header, ha);
        assert_eq!(store.pixels(store.slot("b", "1.png").unwrap()), &[30; 4]);
        assert_eq!(store.class("b").unwrap().files, vec!["1.png", "2.png"]);
        assert_eq!(store.recompute_fingerprint(), ha.fingerprint);
        // a single changed pixel changes the fingerprint
        let c = tempfile::tempdir().unwrap();
        let hc = write(
            c.path(),
            &[("b", "2.png", 10), ("a", "1.png", 20), ("b", "1.png", 31)],
        );
        assert_ne!(hc.fingerprint, ha.fingerprint);
    }

    #[test]
    fn duplicates_and_truncation_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = StoreWriter::create(&dir.path().join("train.store"), meta()).unwrap();
        w.push("a", "1.png", &[0; 4], "x").unwrap();
        assert!(w
            .push("a", "1.png", &[0; 4], "x")
            .unwrap_err()
            .to_string()
            .contains("two images"));
        w.finish().unwrap();
        let path = dir.path().join("train.store");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(
            err.contains("bad magic") && err.contains("cargo xtask fetch-data"),
            "{err}"
        );
    }
}
