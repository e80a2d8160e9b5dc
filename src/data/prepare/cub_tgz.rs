//! Converter for CUB-200-2011's official `CUB_200_2011.tgz`: `images.txt` (id → path),
//! `bounding_boxes.txt` (id x y w h) and `images/<NNN.Class_Name>/<file>.jpg`. Classes keep their
//! folder names; the split lists match them by the 3-digit id. With `bbox_crop`, each image is cut to
//! its box before resizing, as FEAT, DeepEMD and RENet prepare CUB.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::data::archive_members::for_each_member;
use crate::data::raw_image::{CropBox, Payload, RawImage};
use crate::error::{Error, Result};

pub fn convert(
    archives: &[PathBuf],
    bbox_crop: bool,
    emit: &mut dyn FnMut(RawImage) -> Result<()>,
) -> Result<()> {
    let mut jpegs: HashMap<String, Arc<[u8]>> = HashMap::new();
    let mut images_txt = None;
    let mut boxes_txt = None;
    let archive = archives.first().cloned().unwrap_or_default();
    for path in archives {
        for_each_member(path, &mut |name, bytes| {
            if let Some(rel) = name.split_once("/images/").map(|(_, r)| r) {
                if rel.to_ascii_lowercase().ends_with(".jpg") {
                    jpegs.insert(rel.to_string(), Arc::from(bytes));
                }
            } else if name.ends_with("/images.txt") || name == "images.txt" {
                images_txt = Some(String::from_utf8_lossy(&bytes).into_owned());
            } else if name.ends_with("/bounding_boxes.txt") || name == "bounding_boxes.txt" {
                boxes_txt = Some(String::from_utf8_lossy(&bytes).into_owned());
            }
            Ok(())
        })?;
    }
    let bad = |message: String| Error::Archive {
        path: archive.clone(),
        message,
    };
    let images_txt =
        images_txt.ok_or_else(|| bad("no CUB_200_2011/images.txt in the archive".into()))?;
    let boxes = if bbox_crop {
        let text = boxes_txt
            .as_deref()
            .ok_or_else(|| bad("no CUB_200_2011/bounding_boxes.txt in the archive".into()))?;
        parse_boxes(text, &bad)?
    } else {
        HashMap::new()
    };
    for (i, line) in images_txt
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let (id, rel) = line
            .trim()
            .split_once(' ')
            .ok_or_else(|| bad(format!("images.txt line {}: expected `id path`", i + 1)))?;
        let (class, file) = rel.split_once('/').ok_or_else(|| {
            bad(format!(
                "images.txt line {}: path {rel:?} has no class folder",
                i + 1
            ))
        })?;
        let bytes = jpegs.get(rel).ok_or_else(|| {
            bad(format!(
                "images.txt lists {rel}, which is not in the archive"
            ))
        })?;
        let crop = if bbox_crop {
            Some(
                *boxes
                    .get(id)
                    .ok_or_else(|| bad(format!("image id {id} has no bounding box")))?,
            )
        } else {
            None
        };
        emit(RawImage {
            split_key: class.split('.').next().unwrap_or(class).to_string(),
            class: class.to_string(),
            file: file.to_string(),
            origin: format!("{}:CUB_200_2011/images/{rel}", archive.display()),
            payload: Payload::Encoded(bytes.clone()),
            crop,
        })?;
    }
    Ok(())
}

/// `bounding_boxes.txt`: `id x y width height` a line, by image id.
fn parse_boxes<'t>(
    text: &'t str,
    bad: &dyn Fn(String) -> Error,
) -> Result<HashMap<&'t str, CropBox>> {
    let mut boxes = HashMap::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |s: &str| {
            s.parse::<f32>().map_err(|_| {
                bad(format!(
                    "bounding_boxes.txt line {}: bad number {s:?}",
                    i + 1
                ))
            })
        };
        if f.len() != 5 {
            return Err(bad(format!(
                "bounding_boxes.txt line {}: expected 5 fields",
                i + 1
            )));
        }
        boxes.insert(
            f[0],
            CropBox {
                x: num(f[1])?,
                y: num(f[2])?,
                width: num(f[3])?,
                height: num(f[4])?,
            },
        );
    }
    Ok(boxes)
}
