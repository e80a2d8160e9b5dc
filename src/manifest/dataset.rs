//! The schema of `manifests/datasets/<name>.toml`: where a dataset comes from (sources in preference
//! order, each a set of checksummed archives in one format), how it is split into classes, and what
//! the prepared store must look like. Unknown keys are errors, so a typo cannot silently change a run.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One dataset, as `manifests/datasets/<name>.toml` declares it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetManifest {
    /// Directory name under `datasets/` and on mirrors (`<mirror>/<name>/<file>`).
    pub name: String,
    pub title: String,
    /// Printed whenever the dataset is fetched.
    pub licence: String,
    pub store: StoreSpec,
    /// The protocol's normalisation constants for this dataset (METHOD.md §6), on the 0–1 scale.
    pub normalization: Normalization,
    /// Exact number of images every class must have, where the dataset fixes one.
    pub images_per_class: Option<usize>,
    /// Name of the split variant used unless another is asked for.
    pub default_split: String,
    /// Split variants (e.g. CUB's `feat` and `chen`), each the class lists of train/val/test.
    pub splits: BTreeMap<String, SplitLists>,
    /// Sources in preference order.
    #[serde(rename = "source")]
    pub sources: Vec<Source>,
}

/// How prepared images are stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreSpec {
    /// Side length of the square stored images.
    pub size: u32,
    /// 3 for RGB, 1 for greyscale.
    pub channels: u8,
    /// Further resolutions to store beside the main one (written as `<split>@<size>.store`).
    #[serde(default)]
    pub extra_sizes: Vec<u32>,
    /// `stretch` resizes the whole image to size×size (the field's convention for these datasets).
    #[serde(default = "default_resize")]
    pub resize: String,
}

fn default_resize() -> String {
    "stretch".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    /// Where the constants come from.
    pub source: String,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// The class lists of one split variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitLists {
    /// Where the lists come from.
    pub origin: String,
    pub train: Vec<String>,
    pub val: Vec<String>,
    pub test: Vec<String>,
    /// Exact image counts per split, where known.
    pub images: Option<BTreeMap<String, usize>>,
}

impl SplitLists {
    /// `(split name, classes)` in the fixed order train, val, test.
    pub fn iter(&self) -> [(&'static str, &Vec<String>); 3] {
        [
            ("train", &self.train),
            ("val", &self.val),
            ("test", &self.test),
        ]
    }

    pub fn classes(&self, split: &str) -> Option<&Vec<String>> {
        match split {
            "train" => Some(&self.train),
            "val" => Some(&self.val),
            "test" => Some(&self.test),
            _ => None,
        }
    }
}

/// One distribution of the dataset: its archives and their format.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub id: String,
    pub note: Option<String>,
    pub format: Format,
    #[serde(rename = "archive")]
    pub archives: Vec<Archive>,
}

impl Source {
    /// A source whose archives have no public URL exists only on mirrors.
    pub fn mirror_only(&self) -> bool {
        self.archives.iter().all(|a| a.urls.is_empty())
    }
}

/// One file to download and verify.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Archive {
    pub file: String,
    pub size: Option<u64>,
    /// Published SHA-256; when absent the hash is pinned on first download in `manifests/locks/`.
    pub sha256: Option<String>,
    /// A published prefix of the SHA-256 (torchvision names its checkpoints after one).
    pub sha256_prefix: Option<String>,
    /// Published MD5, checked where no SHA-256 is published.
    pub md5: Option<String>,
    /// Public URLs in preference order (mirrors given on the command line are tried before these).
    #[serde(default)]
    pub urls: Vec<String>,
}

/// The layout of a source's archives, which picks the converter that prepares the stores.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Format {
    /// Tar archives of `…/<split dir>/<class>/<file>` images.
    ClassFolders {
        /// split name → directory name inside the archive (`train` → `meta-train`, say).
        split_dirs: BTreeMap<String, String>,
    },
    /// An `images/` folder of JPEGs plus Ravi-style `filename,label` CSVs (RENet/DeepEMD/FEAT).
    ImagesCsv {
        /// split name → CSV file name inside the archive.
        csv: BTreeMap<String, String>,
    },
    /// Ren et al.'s `mini-imagenet-cache-*.pkl`: `{'image_data': uint8 (N,84,84,3), 'class_dict': {wnid: [rows]}}`.
    RenPickles {
        /// split name → pickle file (an archive itself, or a member of a tar archive).
        files: BTreeMap<String, String>,
        /// split name → Ravi CSV naming the images: row k of a class in `class_dict` is taken to be
        /// the class's k-th CSV row (the pickles were built from the CSVs in order). Without it,
        /// files are named `<class>_<row>`.
        #[serde(default)]
        csv: BTreeMap<String, String>,
    },
    /// Ren et al.'s tieredImageNet: `<split>_images_png.pkl` (list of PNG bytes) + `<split>_labels.pkl`.
    TieredPngPickles {
        images: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
    },
    /// CUB-200-2011's official `CUB_200_2011.tgz`.
    CubTgz {
        /// Crop each image to its `bounding_boxes.txt` box before resizing (FEAT/DeepEMD/RENet do).
        bbox_crop: bool,
    },
    /// CIFAR-100's official binary archive (fixed 3,074-byte records).
    Cifar100Binary {},
    /// A PyTorch checkpoint (pretrained weights), used as it is.
    TorchCheckpoint {},
    /// Omniglot zips of `<set>/<Alphabet>/characterNN/<id>_<drawer>.png`; classes are `Alphabet/characterNN`.
    OmniglotZips {},
}

impl Format {
    pub fn name(&self) -> &'static str {
        match self {
            Format::ClassFolders { .. } => "class-folders",
            Format::ImagesCsv { .. } => "images-csv",
            Format::RenPickles { .. } => "ren-pickles",
            Format::TieredPngPickles { .. } => "tiered-png-pickles",
            Format::CubTgz { .. } => "cub-tgz",
            Format::Cifar100Binary {} => "cifar100-binary",
            Format::OmniglotZips {} => "omniglot-zips",
            Format::TorchCheckpoint {} => "torch-checkpoint",
        }
    }
}

impl DatasetManifest {
    /// Checks what serde cannot: names, hashes, split lists, sources.
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !name_ok(&self.name) {
            return Err(format!(
                "name {:?} must be ascii letters, digits, '-' or '_'",
                self.name
            ));
        }
        if self.store.channels != 1 && self.store.channels != 3 {
            return Err(format!(
                "store.channels must be 1 or 3, not {}",
                self.store.channels
            ));
        }
        if self.store.size == 0 || self.store.resize != "stretch" {
            return Err("store.size must be positive and store.resize \"stretch\"".into());
        }
        let c = self.store.channels as usize;
        if self.normalization.mean.len() != c || self.normalization.std.len() != c {
            return Err(format!("normalization mean and std need {c} values each"));
        }
        if !self.splits.contains_key(&self.default_split) {
            return Err(format!(
                "default_split {:?} is not a key of [splits]",
                self.default_split
            ));
        }
        for (variant, lists) in &self.splits {
            let mut seen = BTreeSet::new();
            for (split, classes) in lists.iter() {
                if classes.is_empty() {
                    return Err(format!("splits.{variant}.{split} is empty"));
                }
                for class in classes {
                    if !seen.insert(class.as_str()) {
                        return Err(format!("splits.{variant}: class {class:?} appears twice"));
                    }
                }
            }
            if let Some(images) = &lists.images {
                for key in images.keys() {
                    if lists.classes(key).is_none() {
                        return Err(format!("splits.{variant}.images: unknown split {key:?}"));
                    }
                }
            }
        }
        if self.sources.is_empty() {
            return Err("at least one [[source]] is needed".into());
        }
        let mut ids = BTreeSet::new();
        for source in &self.sources {
            if !ids.insert(source.id.as_str()) || !name_ok(&source.id) {
                return Err(format!(
                    "source id {:?} is duplicated or malformed",
                    source.id
                ));
            }
            if source.archives.is_empty() {
                return Err(format!("source {:?} lists no archive", source.id));
            }
            for archive in &source.archives {
                if archive.file.contains('/') || archive.file.starts_with('.') {
                    return Err(format!(
                        "archive file {:?} must be a plain file name",
                        archive.file
                    ));
                }
                check_hex(&archive.sha256, 64, "sha256", &archive.file)?;
                check_hex(&archive.md5, 32, "md5", &archive.file)?;
                if let Some(p) = &archive.sha256_prefix {
                    if p.is_empty() || p.len() > 64 || !p.chars().all(|c| c.is_ascii_hexdigit()) {
                        return Err(format!("{}: sha256_prefix must be hex", archive.file));
                    }
                }
                for url in &archive.urls {
                    if !(url.starts_with("https://") || url.starts_with("http://")) {
                        return Err(format!("{}: url {url:?} must be http(s)", archive.file));
                    }
                }
            }
        }
        Ok(())
    }

    /// The split variant `name`, or the default one.
    pub fn split_lists(&self, variant: Option<&str>) -> Result<(&str, &SplitLists), String> {
        let name = variant.unwrap_or(&self.default_split);
        self.splits
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
            .ok_or_else(|| {
                format!(
                    "{} has no split variant {name:?}; known: {}",
                    self.name,
                    self.splits.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })
    }
}

fn check_hex(value: &Option<String>, len: usize, what: &str, file: &str) -> Result<(), String> {
    if let Some(v) = value {
        if v.len() != len
            || !v
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        {
            return Err(format!("{file}: {what} must be {len} lowercase hex digits"));
        }
    }
    Ok(())
}
