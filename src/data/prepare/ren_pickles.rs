//! Converter for Ren et al.'s miniImageNet pickles (`mini-imagenet-cache-<split>.pkl`, served by
//! learn2learn's Zenodo record and Dropbox): a dict `{'image_data': uint8 (N, 84, 84, 3),
//! 'class_dict': {wnid: [row, …]}}`, read with the crate's own pickle reader.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::images_csv::parse_ravi_csv;
use crate::data::archive_members::read_member;
use crate::data::raw_image::{Payload, RawImage};
use crate::error::{Error, Result};
use crate::pickle::{parse, NdArray, Value};

pub fn convert(
    archives: &[PathBuf],
    files: &BTreeMap<String, String>,
    csv: &BTreeMap<String, String>,
    emit: &mut dyn FnMut(RawImage) -> Result<()>,
) -> Result<()> {
    for (split, file) in files {
        let path = PathBuf::from(file);
        let bad = |message: String| Error::Pickle {
            path: path.clone(),
            message,
        };
        let bytes = read_member(archives, file)?;
        let value = parse(&bytes).map_err(&bad)?;
        drop(bytes);
        let data = value
            .get("image_data")
            .ok_or_else(|| bad("no 'image_data' key".into()))?;
        let array = NdArray::from_value(data).map_err(&bad)?;
        let pixels = array.as_u8().map_err(&bad)?.clone();
        let [n, h, w, c] = array.shape[..] else {
            return Err(bad(format!(
                "image_data has shape {:?}, expected (N, H, W, C)",
                array.shape
            )));
        };
        let class_dict = value
            .get("class_dict")
            .and_then(|d| d.as_dict())
            .ok_or_else(|| bad("no 'class_dict' dict".into()))?;
        let names = csv
            .get(split)
            .map(|table| files_by_class(archives, table, &bad))
            .transpose()?;
        for (key, rows) in class_dict {
            let class = key
                .as_text()
                .ok_or_else(|| bad("a class_dict key is not text".into()))?;
            let rows = class_rows(class, rows, &bad)?;
            let csv_names = names
                .as_ref()
                .map(|m| m.get(class).cloned().unwrap_or_default());
            if let Some(list) = &csv_names {
                if list.len() != rows.len() {
                    return Err(bad(format!(
                        "class {class} has {} rows, the split CSV lists {} files",
                        rows.len(),
                        list.len()
                    )));
                }
            }
            for (k, &row) in rows.iter().enumerate() {
                let row = usize::try_from(row)
                    .ok()
                    .filter(|&r| r < n)
                    .ok_or_else(|| {
                        bad(format!(
                            "class {class}: row {row} is outside image_data's {n} images"
                        ))
                    })?;
                let name = match &csv_names {
                    Some(list) => list[k].clone(),
                    None => format!("{class}_{row:05}"),
                };
                emit(RawImage {
                    split_key: class.to_string(),
                    class: class.to_string(),
                    origin: format!("{file}[image_data][{row}]"),
                    file: name,
                    payload: Payload::Raw {
                        width: w as u32,
                        height: h as u32,
                        channels: c as u8,
                        data: pixels.clone(),
                        offset: row * h * w * c,
                    },
                    crop: None,
                })?;
            }
        }
    }
    Ok(())
}

/// The split CSV's file names (Ravi's `images/<file>,<label>`) grouped by class, in its order.
fn files_by_class(
    archives: &[PathBuf],
    table: &str,
    bad: &dyn Fn(String) -> Error,
) -> Result<BTreeMap<String, Vec<String>>> {
    let text = read_member(archives, table)?;
    let text = String::from_utf8(text).map_err(|_| bad(format!("{table} is not UTF-8")))?;
    let mut by_class: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (f, label) in parse_ravi_csv(&text).map_err(|m| bad(format!("{table}: {m}")))? {
        by_class
            .entry(label.to_string())
            .or_default()
            .push(f.to_string());
    }
    Ok(by_class)
}

/// A class's rows of `image_data`: a list of ints or an integer array, as the pickles have both.
fn class_rows(class: &str, rows: &Value, bad: &dyn Fn(String) -> Error) -> Result<Vec<i64>> {
    Ok(match rows.as_seq() {
        Some(items) => items
            .iter()
            .map(|v| {
                v.as_int()
                    .ok_or_else(|| bad(format!("class {class}: a row is not an int")))
            })
            .collect::<Result<_>>()?,
        None => NdArray::from_value(rows)
            .and_then(|a| a.to_i64())
            .map_err(bad)?,
    })
}
