//! Toy dataset manifests and throw-away workspaces (data and manifests folders) for the tests.

use std::path::{Path, PathBuf};

use fewshot::fetch::{FetchOptions, Mirror};
use fewshot::manifest::{parse_dataset, DatasetManifest};

pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub options: FetchOptions,
}

impl Workspace {
    pub fn new(mirrors: Vec<Mirror>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let options = FetchOptions {
            data_dir: dir.path().join("datasets"),
            manifests: dir.path().join("manifests"),
            mirrors,
            verify_only: false,
        };
        Self { dir, options }
    }

    /// A folder laid out as a mirror (`<mirror>/<dataset>/<file>`) holding `files`.
    pub fn mirror_dir(&self, dataset: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let root = self.dir.path().join("mirror");
        std::fs::create_dir_all(root.join(dataset)).unwrap();
        for (name, data) in files {
            std::fs::write(root.join(dataset).join(name), data).unwrap();
        }
        root
    }

    pub fn downloads(&self, dataset: &str) -> PathBuf {
        self.options.data_dir.join(dataset).join("downloads")
    }
}

/// A manifest with the given store, class lists and `[[source]]` tables.
pub fn manifest(
    name: &str,
    store: &str,
    splits: [&[&str]; 3],
    extra: &str,
    sources: &str,
) -> DatasetManifest {
    let grey = store.contains("channels = 1");
    let list = |xs: &[&str]| {
        format!(
            "[{}]",
            xs.iter()
                .map(|x| format!("{x:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let text = format!(
        r#"name = "{name}"
title = "toy {name}"
licence = "test data"
default_split = "toy"
{extra}
[store]
{store}

[normalization]
source = "test"
mean = {mean}
std = {std}

[splits.toy]
origin = "test"
train = {}
val = {}
test = {}

{sources}"#,
        list(splits[0]),
        list(splits[1]),
        list(splits[2]),
        mean = if grey { "[0.5]" } else { "[0.5, 0.5, 0.5]" },
        std = if grey { "[0.25]" } else { "[0.25, 0.25, 0.25]" },
    );
    parse_dataset(&text, Path::new(&format!("{name}.toml")))
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}
