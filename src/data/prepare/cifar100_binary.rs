//! Converter for CIFAR-100's official binary archive (`cifar-100-binary.tar.gz`): `train.bin` and
//! `test.bin` hold fixed 3,074-byte records (coarse label, fine label, 1,024 R + 1,024 G + 1,024 B
//! bytes, row-major 32×32); `fine_label_names.txt` names the fine classes. CIFAR-FS pools train and
//! test (600 images per class); images are named `<train|test>_<record index>` since the binary
//! format carries no file names.

use std::path::PathBuf;
use std::sync::Arc;

use crate::data::archive_members::{basename, for_each_member};
use crate::data::raw_image::{Payload, RawImage};
use crate::error::{Error, Result};

const RECORD: usize = 2 + 3 * 1024;

pub fn convert(archives: &[PathBuf], emit: &mut dyn FnMut(RawImage) -> Result<()>) -> Result<()> {
    let mut names = None;
    let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
    let archive = archives.first().cloned().unwrap_or_default();
    for path in archives {
        for_each_member(path, &mut |name, bytes| {
            match basename(name) {
                "fine_label_names.txt" => {
                    names = Some(String::from_utf8_lossy(&bytes).into_owned())
                }
                "train.bin" | "test.bin" => {
                    parts.push((basename(name).trim_end_matches(".bin").to_string(), bytes))
                }
                _ => {}
            }
            Ok(())
        })?;
    }
    let bad = |message: String| Error::Archive {
        path: archive.clone(),
        message,
    };
    let names: Vec<String> = names
        .ok_or_else(|| bad("no fine_label_names.txt in the archive".into()))?
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if parts.len() != 2 {
        return Err(bad("expected train.bin and test.bin in the archive".into()));
    }
    parts.sort();
    // train before test, so record order is fixed
    parts.reverse();
    for (part, bytes) in parts {
        if bytes.len() % RECORD != 0 {
            return Err(bad(format!(
                "{part}.bin is {} bytes, not a multiple of {RECORD}",
                bytes.len()
            )));
        }
        for (i, record) in bytes.chunks_exact(RECORD).enumerate() {
            let fine = record[1] as usize;
            let class = names.get(fine).ok_or_else(|| {
                bad(format!(
                    "{part}.bin record {i}: fine label {fine} has no name"
                ))
            })?;
            let planes = &record[2..];
            let mut hwc = vec![0u8; 3 * 1024];
            for p in 0..1024 {
                for c in 0..3 {
                    hwc[p * 3 + c] = planes[c * 1024 + p];
                }
            }
            emit(RawImage {
                split_key: class.clone(),
                class: class.clone(),
                file: format!("{part}_{i:05}"),
                origin: format!("{}:{part}.bin record {i}", archive.display()),
                payload: Payload::Raw {
                    width: 32,
                    height: 32,
                    channels: 3,
                    data: Arc::from(hwc),
                    offset: 0,
                },
                crop: None,
            })?;
        }
    }
    Ok(())
}
