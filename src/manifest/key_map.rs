//! `manifests/key-maps/<name>.toml`: how another codebase names a backbone's parameters in its PyTorch
//! checkpoints, so `fewshot eval --torch-backbone <file.pth> --key-map <name>` can score that model on the
//! frozen episodes like any cell. Renames are prefix rewrites tried in order (the first that matches wins);
//! keys under an `ignore` prefix (classifier heads, temperature scalars) are dropped.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyMap {
    pub name: String,
    pub description: String,
    /// The backbone kind the checkpoints hold (`conv4`, `resnet12`, `resnet18`).
    pub backbone: String,
    #[serde(default)]
    pub rename: Vec<PrefixRename>,
    #[serde(default)]
    pub ignore: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixRename {
    pub from: String,
    pub to: String,
}

impl KeyMap {
    pub fn read(manifests: &Path, name: &str) -> Result<Self> {
        let path = manifests.join("key-maps").join(format!("{name}.toml"));
        super::read_toml(&path)
    }

    /// This suite's name for a checkpoint key, or None when the key is ignored.
    pub fn map_key(&self, key: &str) -> Option<String> {
        if self.ignore.iter().any(|p| key.starts_with(p.as_str())) {
            return None;
        }
        for r in &self.rename {
            if let Some(rest) = key.strip_prefix(r.from.as_str()) {
                return Some(format!("{}{rest}", r.to));
            }
        }
        Some(key.to_string())
    }

    /// Renames every key of a state dict; two keys landing on one name is an error naming both.
    pub fn apply<T>(
        &self,
        dict: BTreeMap<String, T>,
    ) -> std::result::Result<BTreeMap<String, T>, String> {
        let mut out = BTreeMap::new();
        let mut origin: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in dict {
            if let Some(mapped) = self.map_key(&key) {
                if let Some(first) = origin.get(&mapped) {
                    return Err(format!(
                        "key map {}: {first} and {key} both map to {mapped}",
                        self.name
                    ));
                }
                origin.insert(mapped.clone(), key);
                out.insert(mapped, value);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_in_order_ignores_and_refuses_collisions() {
        let map: KeyMap = toml::from_str(
            r#"
name = "t"
description = "test"
backbone = "resnet12"
ignore = ["fc.", "module.fc.", "scale"]
[[rename]]
from = "module.encoder."
to = ""
[[rename]]
from = "encoder."
to = ""
"#,
        )
        .unwrap();
        assert_eq!(
            map.map_key("module.encoder.layer1.0.conv1.weight")
                .as_deref(),
            Some("layer1.0.conv1.weight")
        );
        assert_eq!(
            map.map_key("encoder.layer2.0.bn1.bias").as_deref(),
            Some("layer2.0.bn1.bias")
        );
        assert_eq!(map.map_key("fc.weight"), None);
        assert_eq!(map.map_key("scale_cls"), None);
        let dict: BTreeMap<String, u8> =
            [("encoder.a".to_string(), 1), ("fc.w".to_string(), 2)].into();
        assert_eq!(
            map.apply(dict).unwrap(),
            BTreeMap::from([("a".to_string(), 1)])
        );
        let clash: BTreeMap<String, u8> = [
            ("encoder.a".to_string(), 1),
            ("module.encoder.a".to_string(), 2),
        ]
        .into();
        assert!(map.apply(clash).unwrap_err().contains("both map to a"));
        let manifests = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests");
        let renet = KeyMap::read(&manifests, "renet-resnet12").unwrap();
        assert_eq!(
            renet
                .map_key("module.encoder.layer4.0.conv3.weight")
                .as_deref(),
            Some("layer4.0.conv3.weight")
        );
    }
}
