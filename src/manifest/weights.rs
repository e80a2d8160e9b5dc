//! The schema of `manifests/weights/<name>.toml`: pretrained weights fetched and verified like a
//! dataset's archives (torchvision's ImageNet ResNet-18 for the paper protocol).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::dataset::{Format, Source};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsManifest {
    pub name: String,
    pub title: String,
    pub licence: String,
    #[serde(rename = "source")]
    pub sources: Vec<Source>,
}

impl WeightsManifest {
    /// The file the weights land in: `<data_dir>/<name>/downloads/<first source's file>`.
    pub fn local_file(&self, data_dir: &Path) -> PathBuf {
        super::downloads_dir(data_dir, &self.name).join(&self.sources[0].archives[0].file)
    }
}

/// Reads `manifests/weights/<name>.toml`.
pub fn load_weights(manifests: &Path, name: &str) -> Result<WeightsManifest> {
    let path = manifests.join("weights").join(format!("{name}.toml"));
    let m: WeightsManifest = super::read_toml(&path)?;
    let ok = m.name == name
        && !m.sources.is_empty()
        && m.sources
            .iter()
            .all(|s| s.format == Format::TorchCheckpoint {} && s.archives.len() == 1);
    if !ok {
        return Err(Error::Manifest {
            path,
            message: "a weights manifest names itself like its file and lists torch-checkpoint sources of one file each".into(),
        });
    }
    Ok(m)
}
