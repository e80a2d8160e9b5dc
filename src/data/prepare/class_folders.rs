//! Converter for class-folder archives: `…/<split dir>/<class>/<file>.jpg` (the `mini-imagenet-84`
//! mirror distribution, RENet's tieredImageNet and CIFAR-FS tarballs).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::is_image_name;
use crate::data::archive_members::for_each_member;
use crate::data::raw_image::{Payload, RawImage};
use crate::error::{Error, Result};

pub fn convert(
    archives: &[PathBuf],
    split_dirs: &BTreeMap<String, String>,
    emit: &mut dyn FnMut(RawImage) -> Result<()>,
) -> Result<()> {
    let mut images = 0usize;
    for archive in archives {
        for_each_member(archive, &mut |name, bytes| {
            let parts: Vec<&str> = name
                .split('/')
                .filter(|p| !p.is_empty() && *p != ".")
                .collect();
            if parts.len() < 3 || !is_image_name(name) {
                return Ok(());
            }
            let (dir, class, file) = (
                parts[parts.len() - 3],
                parts[parts.len() - 2],
                parts[parts.len() - 1],
            );
            if !split_dirs.values().any(|d| d == dir) {
                return Ok(());
            }
            images += 1;
            emit(RawImage {
                split_key: class.to_string(),
                class: class.to_string(),
                file: file.to_string(),
                origin: format!("{}:{name}", archive.display()),
                payload: Payload::Encoded(Arc::from(bytes)),
                crop: None,
            })
        })?;
    }
    if images == 0 {
        return Err(Error::Archive {
            path: archives.first().cloned().unwrap_or_default(),
            message: format!(
                "no image under a split folder ({}) was found; is this the right archive?",
                split_dirs.values().cloned().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    Ok(())
}
