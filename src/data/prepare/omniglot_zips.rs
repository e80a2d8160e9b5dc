//! Converter for Omniglot's zips (`<set>/<Alphabet>/characterNN/<id>_<drawer>.png`, 105×105 binary
//! PNGs). A class is `Alphabet/characterNN`. The two small background sets both contain Greek and
//! Latin, byte for byte; such repeats are kept once (a repeat with different bytes is an error).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::data::archive_members::for_each_member;
use crate::data::raw_image::{Payload, RawImage};
use crate::error::{Error, Result};

pub fn convert(archives: &[PathBuf], emit: &mut dyn FnMut(RawImage) -> Result<()>) -> Result<()> {
    let mut seen: HashMap<(String, String), [u8; 32]> = HashMap::new();
    for archive in archives {
        for_each_member(archive, &mut |name, bytes| {
            let parts: Vec<&str> = name.split('/').collect();
            if parts.len() < 3 || !name.to_ascii_lowercase().ends_with(".png") {
                return Ok(());
            }
            let n = parts.len();
            let class = format!("{}/{}", parts[n - 3], parts[n - 2]);
            let file = parts[n - 1].to_string();
            let digest: [u8; 32] = Sha256::digest(&bytes).into();
            if let Some(previous) = seen.insert((class.clone(), file.clone()), digest) {
                if previous == digest {
                    return Ok(());
                }
                return Err(Error::Archive {
                    path: archive.clone(),
                    message: format!(
                        "{name} differs from the {class}/{file} of an earlier archive"
                    ),
                });
            }
            emit(RawImage {
                split_key: class.clone(),
                class,
                file,
                origin: format!("{}:{name}", archive.display()),
                payload: Payload::Encoded(Arc::from(bytes)),
                crop: None,
            })
        })?;
    }
    Ok(())
}
