//! A small store cut from a prepared one: the first `classes` classes (by name) and the first
//! `images` files of each (by name), pixels copied unchanged, for taking a dataset's worth of real
//! images to a machine that cannot prepare data itself (the GPU machine has no Rust; issue #6). The
//! subset is a store like any other, with its own fingerprint, and says in its header what it was
//! cut from, so nothing it produces can pass for a result on the full split.

use std::path::Path;

use crate::data::store::{Store, StoreHeader, StoreMeta, StoreWriter};
use crate::error::{Error, Result};

/// Writes the subset of `store` to `out` (atomically) and returns its header.
pub fn write_subset(
    store: &Store,
    classes: usize,
    images: usize,
    out: &Path,
) -> Result<StoreHeader> {
    let h = &store.header;
    let refuse = |message: String| Error::Invalid {
        message: format!("{}: {message}", store.path.display()),
    };
    if classes == 0 || images == 0 {
        return Err(refuse(
            "a subset needs at least one class and one image".into(),
        ));
    }
    if h.height != h.width {
        return Err(refuse(format!(
            "stores are square; this one is {}×{}",
            h.height, h.width
        )));
    }
    if classes > h.classes.len() {
        return Err(refuse(format!(
            "{classes} classes asked for, the store has {}; ask for fewer with --classes",
            h.classes.len()
        )));
    }
    let chosen = &h.classes[..classes];
    if let Some(short) = chosen.iter().find(|c| c.files.len() < images) {
        return Err(refuse(format!(
            "class {} has {} images, {images} asked for; ask for fewer with --images",
            short.name,
            short.files.len()
        )));
    }
    if out == store.path.as_path() {
        return Err(refuse(
            "the subset would overwrite its own source; pick another --out".into(),
        ));
    }
    let meta = StoreMeta {
        dataset: h.dataset.clone(),
        split: h.split.clone(),
        split_variant: format!("{}-subset-{classes}x{images}", h.split_variant),
        source: format!(
            "subset of {} (fingerprint {}): the first {classes} classes × the first {images} images by name",
            h.source, h.fingerprint
        ),
        source_sha256: h.source_sha256.clone(),
        size: h.height,
        channels: h.channels,
        decoder: h.decoder.clone(),
        transform: h.transform.clone(),
        normalization_mean: h.normalization_mean.clone(),
        normalization_std: h.normalization_std.clone(),
        normalization_source: h.normalization_source.clone(),
    };
    let mut writer = StoreWriter::create(out, meta)?;
    let origin = store.path.display().to_string();
    for class in chosen {
        for (file, &slot) in class.files.iter().zip(&class.slots).take(images) {
            writer.push(&class.name, file, store.pixels(slot), &origin)?;
        }
    }
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(dir: &Path) -> Store {
        let meta = StoreMeta {
            source_sha256: vec!["ab".into()],
            ..crate::data::store::tests::meta()
        };
        let path = dir.join("train.store");
        let mut w = StoreWriter::create(&path, meta).unwrap();
        for (c, class) in ["c", "a", "b"].iter().enumerate() {
            for i in 0..4u8 {
                w.push(class, &format!("{i}.png"), &[c as u8 * 10 + i; 4], "test")
                    .unwrap();
            }
        }
        w.finish().unwrap();
        Store::open(&path).unwrap()
    }

    #[test]
    fn the_subset_holds_the_first_classes_and_files_by_name_with_their_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let full = source(dir.path());
        let out = dir.path().join("sub/train.store");
        let header = write_subset(&full, 2, 3, &out).unwrap();
        let sub = Store::open(&out).unwrap();
        assert_eq!(sub.header, header);
        let names: Vec<&str> = header.classes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(header.count, 6);
        for class in &header.classes {
            assert_eq!(class.files, ["0.png", "1.png", "2.png"]);
            for file in &class.files {
                let (a, b) = (full.slot(&class.name, file), sub.slot(&class.name, file));
                assert_eq!(sub.pixels(b.unwrap()), full.pixels(a.unwrap()));
            }
        }
        assert_eq!(header.split_variant, "default-subset-2x3");
        assert!(header.source.contains(&full.header.fingerprint));
        assert_ne!(header.fingerprint, full.header.fingerprint);
        assert_eq!(sub.recompute_fingerprint(), header.fingerprint);
    }

    #[test]
    fn impossible_subsets_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let full = source(dir.path());
        let out = dir.path().join("sub.store");
        let e = write_subset(&full, 4, 1, &out).unwrap_err().to_string();
        assert!(e.contains("4 classes") && e.contains("--classes"), "{e}");
        let e = write_subset(&full, 1, 5, &out).unwrap_err().to_string();
        assert!(
            e.contains("class a has 4 images") && e.contains("--images"),
            "{e}"
        );
        let e = write_subset(&full, 1, 1, &full.path.clone())
            .unwrap_err()
            .to_string();
        assert!(e.contains("overwrite"), "{e}");
        assert!(!out.exists(), "nothing is written for a refused subset");
    }
}
