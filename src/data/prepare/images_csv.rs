//! Converter for the RENet/DeepEMD/FEAT layout: one folder of images plus Ravi-style CSVs
//! (`filename,label` header, one row per image) that give each file's class.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use super::is_image_name;
use crate::data::archive_members::{basename, for_each_member};
use crate::data::raw_image::{Payload, RawImage};
use crate::error::{Error, Result};

pub fn convert(
    archives: &[PathBuf],
    csv: &BTreeMap<String, String>,
    emit: &mut dyn FnMut(RawImage) -> Result<()>,
) -> Result<()> {
    let mut images: HashMap<String, (Arc<[u8]>, String)> = HashMap::new();
    let mut tables: HashMap<String, String> = HashMap::new();
    let wanted: Vec<&String> = csv.values().collect();
    for archive in archives {
        for_each_member(archive, &mut |name, bytes| {
            let base = basename(name);
            if is_image_name(name) {
                images.insert(
                    base.to_string(),
                    (Arc::from(bytes), format!("{}:{name}", archive.display())),
                );
            } else if wanted.iter().any(|w| w.as_str() == base) {
                let text = String::from_utf8(bytes).map_err(|_| Error::Archive {
                    path: archive.clone(),
                    message: format!("{name} is not UTF-8 text"),
                })?;
                tables.insert(base.to_string(), text);
            }
            Ok(())
        })?;
    }
    let first = archives.first().cloned().unwrap_or_default();
    for table_name in csv.values() {
        let text = tables.get(table_name).ok_or_else(|| Error::Archive {
            path: first.clone(),
            message: format!("the split file {table_name} is not in the archive"),
        })?;
        for (file, class) in parse_ravi_csv(text).map_err(|message| Error::Archive {
            path: first.clone(),
            message: format!("{table_name}: {message}"),
        })? {
            let (bytes, origin) = images.get(file).ok_or_else(|| Error::Archive {
                path: first.clone(),
                message: format!("{table_name} lists {file}, which is not in the archive"),
            })?;
            emit(RawImage {
                split_key: class.to_string(),
                class: class.to_string(),
                file: file.to_string(),
                origin: origin.clone(),
                payload: Payload::Encoded(bytes.clone()),
                crop: None,
            })?;
        }
    }
    Ok(())
}

/// Rows `(filename, label)` of a Ravi & Larochelle split CSV (header `filename,label`).
pub fn parse_ravi_csv(text: &str) -> std::result::Result<Vec<(&str, &str)>, String> {
    let mut lines = text.lines();
    let header = lines.next().ok_or("empty file")?;
    if header.trim() != "filename,label" {
        return Err(format!(
            "expected the header \"filename,label\", found {header:?}"
        ));
    }
    lines
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let (file, label) = line
                .trim()
                .split_once(',')
                .ok_or_else(|| format!("line {}: expected two fields", i + 2))?;
            Ok((file, label))
        })
        .collect()
}
