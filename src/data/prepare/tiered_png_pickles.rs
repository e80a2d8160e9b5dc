//! Converter for Ren et al.'s tieredImageNet pickles (`<split>_images_png.pkl`: a list of PNG-encoded
//! 84×84 images as uint8 arrays or bytes; `<split>_labels.pkl`: a dict whose `label_specific` gives
//! each image's class index and `label_specific_str` the class names). The files name no images, so
//! images are named `<wnid>_<k>.png` by their order within the class.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use crate::data::archive_members::read_member;
use crate::data::raw_image::{Payload, RawImage};
use crate::error::{Error, Result};
use crate::pickle::{parse, NdArray, Value};

pub fn convert(
    archives: &[PathBuf],
    images: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
    emit: &mut dyn FnMut(RawImage) -> Result<()>,
) -> Result<()> {
    for (split, image_file) in images {
        let label_file = labels.get(split).ok_or_else(|| Error::Manifest {
            path: PathBuf::from(image_file),
            message: format!("format.labels has no entry for split {split}"),
        })?;
        let bad = |file: &str, message: String| Error::Pickle {
            path: PathBuf::from(file),
            message,
        };
        let label_value =
            parse(&read_member(archives, label_file)?).map_err(|m| bad(label_file, m))?;
        let specific = label_value
            .get("label_specific")
            .ok_or_else(|| bad(label_file, "no 'label_specific' key".into()))?;
        let specific = match specific.as_seq() {
            Some(items) => items.iter().map(|v| v.as_int().unwrap_or(-1)).collect(),
            None => NdArray::from_value(specific)
                .and_then(|a| a.to_i64())
                .map_err(|m| bad(label_file, m))?,
        };
        let names_value = label_value
            .get("label_specific_str")
            .ok_or_else(|| bad(label_file, "no 'label_specific_str' key".into()))?;
        let names: Vec<String> = match names_value.as_seq() {
            Some(items) => items
                .iter()
                .map(|v| v.as_text().unwrap_or("").to_string())
                .collect(),
            None => match NdArray::from_value(names_value)
                .map_err(|m| bad(label_file, m))?
                .data
            {
                crate::pickle::ArrayData::Objects(items) => items
                    .iter()
                    .map(|v| v.as_text().unwrap_or("").to_string())
                    .collect(),
                _ => {
                    return Err(bad(
                        label_file,
                        "label_specific_str is not a list of names".into(),
                    ))
                }
            },
        };
        let image_value =
            parse(&read_member(archives, image_file)?).map_err(|m| bad(image_file, m))?;
        let items: Vec<Value> = match &image_value {
            Value::List(items) => items.clone(),
            other => match NdArray::from_value(other)
                .map_err(|m| bad(image_file, m))?
                .data
            {
                crate::pickle::ArrayData::Objects(items) => items,
                _ => return Err(bad(image_file, "expected a list of PNG images".into())),
            },
        };
        if items.len() != specific.len() {
            return Err(bad(
                image_file,
                format!(
                    "{} images but {label_file} has {} labels",
                    items.len(),
                    specific.len()
                ),
            ));
        }
        let mut within_class: HashMap<usize, usize> = HashMap::new();
        for (i, (item, &label)) in items.iter().zip(&specific).enumerate() {
            let class = usize::try_from(label)
                .ok()
                .and_then(|l| names.get(l).map(|n| (l, n)))
                .ok_or_else(|| bad(label_file, format!("image {i}: label {label} has no name")))?;
            let bytes: Arc<[u8]> = match item.to_bytes() {
                Some(b) => b,
                None => NdArray::from_value(item)
                    .and_then(|a| a.as_u8().cloned())
                    .map_err(|m| bad(image_file, format!("image {i}: {m}")))?,
            };
            let k = within_class.entry(class.0).or_default();
            *k += 1;
            emit(RawImage {
                split_key: class.1.clone(),
                class: class.1.clone(),
                file: format!("{}_{:06}.png", class.1, *k),
                origin: format!("{image_file}[{i}]"),
                payload: Payload::Encoded(bytes),
                crop: None,
            })?;
        }
    }
    Ok(())
}
