//! `manifests/references/<table>.toml`: published numbers with their sources (METHOD.md §12), one
//! `[[reference]]` per source and method. The method's own authors' number is the reference a report
//! compares with; reproductions give the range beside it. A method without a usable number carries
//! `missing` (why) and no values, and reports print "n/a". `role = "related"` sources are other
//! methods shown beside a row as such (e.g. Baseline++ beside the cosine head), never its Δ.
//!
//! Every source names its backbone as the source spells it (`Conv64F`, `CNN4`, `ResNet-12`); that name
//! maps to one canonical [`BackboneKind`], and a row is compared only with sources of its own backbone,
//! so a Conv-4 number is never the Δ of a ResNet-12 row.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::model::BackboneKind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct References {
    pub table: String,
    pub reference: Vec<PublishedSource>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Authors,
    Reproduction,
    Related,
}

/// The canonical backbone of a source's spelling: Conv-4 (Snell's four 64-channel blocks, as
/// `Conv4`, `Conv64F`, `CNN4`), ResNet-12, ResNet-18 (however pretrained).
pub fn canonical_backbone(name: &str) -> Option<BackboneKind> {
    let key: String = name
        .chars()
        .take_while(|c| *c != '(')
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    match key.as_str() {
        "conv4" | "conv64f" | "cnn4" => Some(BackboneKind::Conv4),
        "resnet12" => Some(BackboneKind::Resnet12),
        "resnet18" => Some(BackboneKind::Resnet18),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedSource {
    pub method: String,
    pub role: Role,
    pub source: String,
    pub backbone: String,
    pub episodes: Option<usize>,
    pub ci_formula: Option<String>,
    pub note: Option<String>,
    /// The related method's own name (`role = "related"` only), e.g. "Baseline++".
    pub name: Option<String>,
    /// Why there is no number (with `values = []`).
    pub missing: Option<String>,
    pub values: Vec<PublishedValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedValue {
    pub dataset: String,
    pub shot: usize,
    /// Accuracy in %.
    pub accuracy: f64,
    pub ci95: Option<f64>,
}

impl References {
    pub fn read(manifests: &Path, table: &str) -> Result<Self> {
        let path = manifests.join("references").join(format!("{table}.toml"));
        let refs: References = super::read_toml(&path)?;
        for r in &refs.reference {
            let problem = if r.values.is_empty() != r.missing.is_some() {
                Some("a source has values or says why it is missing, not both or neither".into())
            } else if canonical_backbone(&r.backbone).is_none() {
                Some(format!(
                    "backbone {:?} is not one this suite knows; write Conv-4 (or Conv4, Conv64F, CNN4), ResNet-12 or ResNet-18",
                    r.backbone
                ))
            } else if (r.role == Role::Related) != r.name.is_some() {
                Some("a related source names its method with `name`, and only a related one".into())
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(Error::Manifest {
                    path: path.clone(),
                    message: format!("{} ({}): {problem}", r.method, r.source),
                });
            }
        }
        Ok(refs)
    }

    /// The authors' number for (method, dataset, shot) on `backbone`, with its source.
    pub fn authors<'a>(
        &'a self,
        method: &'a str,
        dataset: &'a str,
        shot: usize,
        backbone: BackboneKind,
    ) -> Option<(&'a PublishedSource, &'a PublishedValue)> {
        self.values(method, dataset, shot, backbone)
            .find(|(s, _)| s.role == Role::Authors)
    }

    /// The (min, max) of the reproductions listed for (method, dataset, shot) on `backbone`, and
    /// how many.
    pub fn reproduction_range(
        &self,
        method: &str,
        dataset: &str,
        shot: usize,
        backbone: BackboneKind,
    ) -> Option<(f64, f64, usize)> {
        let v: Vec<f64> = self
            .values(method, dataset, shot, backbone)
            .filter(|(s, _)| s.role == Role::Reproduction)
            .map(|(_, v)| v.accuracy)
            .collect();
        (!v.is_empty()).then(|| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lo, hi, v.len())
        })
    }

    /// Related methods' numbers shown beside (method, dataset, shot) on `backbone`: (name, accuracy).
    pub fn related(
        &self,
        method: &str,
        dataset: &str,
        shot: usize,
        backbone: BackboneKind,
    ) -> Vec<(String, f64)> {
        self.values(method, dataset, shot, backbone)
            .filter(|(s, _)| s.role == Role::Related)
            .map(|(s, v)| (s.name.clone().unwrap_or_default(), v.accuracy))
            .collect()
    }

    /// Why a method has no authors' number on `backbone`: the manifest's reason, or that the
    /// authors published on other backbones only.
    pub fn missing(&self, method: &str, backbone: BackboneKind) -> Option<String> {
        let authors: Vec<&PublishedSource> = self
            .reference
            .iter()
            .filter(|r| r.method == method && r.role == Role::Authors)
            .collect();
        if let Some(why) = authors.iter().find_map(|r| r.missing.as_deref()) {
            return Some(why.to_string());
        }
        let others: Vec<&str> = authors
            .iter()
            .filter(|r| canonical_backbone(&r.backbone) != Some(backbone))
            .map(|r| r.backbone.as_str())
            .collect();
        (!others.is_empty() && others.len() == authors.len()).then(|| {
            format!(
                "no published {} number; the authors report {}",
                backbone.display_name(),
                others.join(", ")
            )
        })
    }

    fn values<'a>(
        &'a self,
        method: &'a str,
        dataset: &'a str,
        shot: usize,
        backbone: BackboneKind,
    ) -> impl Iterator<Item = (&'a PublishedSource, &'a PublishedValue)> + 'a {
        self.reference
            .iter()
            .filter(move |r| {
                r.method == method && canonical_backbone(&r.backbone) == Some(backbone)
            })
            .flat_map(move |r| {
                r.values
                    .iter()
                    .filter(move |v| v.dataset == dataset && v.shot == shot)
                    .map(move |v| (r, v))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table1_references_parse_and_lwfm_spm_stays_missing() {
        let manifests = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests");
        let r = References::read(&manifests, "table1").unwrap();
        let (r12, c4) = (BackboneKind::Resnet12, BackboneKind::Conv4);
        let (src, v) = r.authors("deepemd", "mini-imagenet", 1, r12).unwrap();
        assert_eq!(v.accuracy, 66.50);
        assert!(src.source.contains("DeepEMD"));
        assert!(r.authors("lwfm-spm", "mini-imagenet", 1, r12).is_none());
        assert!(r
            .missing("lwfm-spm", r12)
            .unwrap()
            .contains("not available"));
        let (lo, hi, n) = r
            .reproduction_range("protonet", "mini-imagenet", 1, r12)
            .unwrap();
        assert_eq!((lo, hi, n), (54.25, 63.6, 5));
        // each row meets only its own backbone's numbers: Snell's Conv-4 number is not the
        // ResNet-12 row's Δ, and Conv64F, Conv4 and CNN4 are all Conv-4
        assert!(r.authors("protonet", "mini-imagenet", 1, r12).is_none());
        assert!(r
            .missing("protonet", r12)
            .unwrap()
            .contains("no published ResNet-12 number"));
        assert_eq!(
            r.authors("protonet", "mini-imagenet", 5, c4)
                .unwrap()
                .1
                .accuracy,
            68.20
        );
        assert_eq!(
            r.reproduction_range("protonet", "mini-imagenet", 1, c4),
            Some((46.30, 49.1, 4))
        );
        assert!(r.authors("deepemd", "mini-imagenet", 1, c4).is_none());
        assert!(r
            .missing("deepemd", c4)
            .unwrap()
            .contains("no published Conv-4"));
        let related = r.related("cosine", "mini-imagenet", 1, c4);
        assert_eq!(related.len(), 2);
        assert!(related.contains(&("Baseline++".to_string(), 48.24)));
        assert!(r.related("protonet", "mini-imagenet", 1, c4).is_empty());
        // every method of the experiment has an entry
        let e = crate::manifest::experiment::Experiment::read(&manifests, "table1").unwrap();
        for g in &e.group {
            for m in &g.methods {
                assert!(r.reference.iter().any(|s| &s.method == m), "{m}");
            }
        }
    }

    #[test]
    fn backbones_are_canonical_and_an_unknown_one_is_refused() {
        for (name, kind) in [
            ("Conv-4", BackboneKind::Conv4),
            ("Conv64F", BackboneKind::Conv4),
            ("CNN4", BackboneKind::Conv4),
            ("ResNet12", BackboneKind::Resnet12),
            ("ResNet-18 (ImageNet-pretrained)", BackboneKind::Resnet18),
        ] {
            assert_eq!(canonical_backbone(name), Some(kind), "{name}");
        }
        assert_eq!(canonical_backbone("WRN-28-10"), None);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("references")).unwrap();
        std::fs::write(
            dir.path().join("references/t.toml"),
            "table = \"t\"\n[[reference]]\nmethod = \"protonet\"\nrole = \"authors\"\nsource = \"s\"\nbackbone = \"WRN-28-10\"\nvalues = [{ dataset = \"mini-imagenet\", shot = 1, accuracy = 1.0 }]\n",
        )
        .unwrap();
        let err = References::read(dir.path(), "t").unwrap_err().to_string();
        assert!(
            err.contains("t.toml") && err.contains("WRN-28-10") && err.contains("Conv-4"),
            "{err}"
        );
    }
}
